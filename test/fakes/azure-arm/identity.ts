import { X509Certificate, constants, createHash, randomBytes, verify } from 'node:crypto';

/** An app registration the fake tenant knows: a client secret, a certificate, or both. */
export interface ClientRegistration {
  clientId: string;
  secret?: string;
  certificatePem?: string;
}

export interface TokenReply {
  status: number;
  body: Record<string, unknown>;
}

const b64url = (s: string): Buffer => Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');

const oauthError = (status: number, error: string, description: string): TokenReply => ({
  status,
  body: { error, error_description: description, error_codes: [], timestamp: new Date().toISOString() },
});

/**
 * The Microsoft identity platform of one tenant, as far as a confidential client uses it: OpenID
 * metadata, and the v2.0 token endpoint's client-credentials grant with a secret or with a certificate
 * assertion (a JWT signed with the certificate's key, RS256 or PS256, naming the certificate by
 * thumbprint). ARM requests must carry a token it issued.
 */
export class FakeIdentity {
  private readonly issued = new Set<string>();

  constructor(
    readonly tenantId: string,
    private readonly clients: ClientRegistration[],
  ) {}

  /** Every access token handed out: tests assert none of them reaches a log. */
  get issuedTokens(): string[] {
    return [...this.issued];
  }

  knowsTenant(tenant: string): boolean {
    return tenant.toLowerCase() === this.tenantId.toLowerCase();
  }

  openIdConfiguration(baseUrl: string, tenant: string): Record<string, unknown> {
    const root = `${baseUrl}/${tenant}`;
    return {
      token_endpoint: `${root}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      jwks_uri: `${root}/discovery/v2.0/keys`,
      response_modes_supported: ['query', 'fragment', 'form_post'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      issuer: `${root}/v2.0`,
      request_uri_parameter_supported: false,
      userinfo_endpoint: `${baseUrl}/oidc/userinfo`,
      authorization_endpoint: `${root}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${root}/oauth2/v2.0/devicecode`,
      http_logout_supported: true,
      frontchannel_logout_supported: true,
      end_session_endpoint: `${root}/oauth2/v2.0/logout`,
      claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nbf', 'tid'],
      tenant_region_scope: 'NA',
      cloud_instance_name: 'fake.cloud',
      cloud_graph_host_name: 'graph.fake.cloud',
      msgraph_host: 'graph.fake.cloud',
    };
  }

  /** POST /{tenant}/oauth2/v2.0/token with a form body. */
  token(tenant: string, form: URLSearchParams, tokenUrl: string): TokenReply {
    if (!this.knowsTenant(tenant)) return oauthError(400, 'invalid_request', `AADSTS90002: Tenant '${tenant}' not found.`);
    if (form.get('grant_type') !== 'client_credentials')
      return oauthError(400, 'unsupported_grant_type', 'AADSTS70003: The app requested an unsupported grant type.');
    const clientId = form.get('client_id') ?? '';
    const client = this.clients.find((c) => c.clientId === clientId);
    if (!client) return oauthError(400, 'unauthorized_client', `AADSTS700016: Application with identifier '${clientId}' was not found in the directory.`);
    if (!form.get('scope')?.endsWith('/.default')) return oauthError(400, 'invalid_scope', 'AADSTS1002012: The provided value for scope is not valid.');
    const secret = form.get('client_secret');
    const assertion = form.get('client_assertion');
    if (secret !== null) {
      if (secret !== client.secret) return oauthError(401, 'invalid_client', 'AADSTS7000215: Invalid client secret provided.');
    } else if (assertion !== null) {
      const problem = this.checkAssertion(client, assertion, tokenUrl);
      if (problem) return oauthError(401, 'invalid_client', `AADSTS700027: Client assertion failed signature validation: ${problem}`);
    } else {
      return oauthError(401, 'invalid_client', 'AADSTS7000218: The request body must contain client_assertion or client_secret.');
    }
    const accessToken = `fake.${randomBytes(24).toString('base64url')}`;
    this.issued.add(accessToken);
    return { status: 200, body: { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: accessToken } };
  }

  /** Whether an `Authorization` header carries a token this tenant issued. */
  accepts(authorization: string | undefined): 'ok' | 'missing' | 'invalid' {
    if (!authorization) return 'missing';
    const m = /^Bearer (.+)$/.exec(authorization);
    return m && this.issued.has(m[1]!) ? 'ok' : 'invalid';
  }

  private checkAssertion(client: ClientRegistration, jwt: string, tokenUrl: string): string | null {
    if (!client.certificatePem) return 'no certificate is registered for this application';
    const parts = jwt.split('.');
    if (parts.length !== 3) return 'malformed JWT';
    const header = JSON.parse(b64url(parts[0]!).toString('utf8')) as Record<string, string>;
    const claims = JSON.parse(b64url(parts[1]!).toString('utf8')) as Record<string, unknown>;
    const cert = new X509Certificate(client.certificatePem);
    const der = cert.raw;
    const sha1 = createHash('sha1').update(der).digest('base64url');
    const sha256 = createHash('sha256').update(der).digest('base64url');
    if (header['x5t'] !== sha1 && header['x5t#S256'] !== sha256) return 'certificate thumbprint does not match';
    if (claims['iss'] !== client.clientId || claims['sub'] !== client.clientId) return 'iss and sub must be the client id';
    if (String(claims['aud']).toLowerCase() !== tokenUrl.toLowerCase()) return `audience ${String(claims['aud'])} is not ${tokenUrl}`;
    if (typeof claims['exp'] !== 'number' || claims['exp'] * 1000 < Date.now()) return 'assertion expired';
    const data = Buffer.from(`${parts[0]}.${parts[1]}`);
    const signature = b64url(parts[2]!);
    const key = cert.publicKey;
    const ok =
      header['alg'] === 'RS256'
        ? verify('sha256', data, key, signature)
        : header['alg'] === 'PS256'
          ? verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature)
          : false;
    return ok ? null : 'signature does not verify';
  }
}
