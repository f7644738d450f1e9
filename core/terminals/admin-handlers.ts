import type { Identity } from '../../spool-bootstrap/pki.js';
import type { Revocations } from '../../spool-bootstrap/revocations.js';
import { issueUserBundle, revokeUser, USER_NAME_PATTERN } from '../../spool-bootstrap/users.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { ParamsOf, ResultOf } from '../../terminal-protocol/method.js';
import type { TerminalMethods } from '../../terminal-protocol/terminal-methods.js';
import type { CoreServices } from '../services.js';

/** Issuing and revoking user certificates. A revocation also closes the user's open connections. */
export class AdminHandlers {
  constructor(
    private readonly services: CoreServices,
    private readonly revocations: Revocations,
    private readonly disconnect: (serials: Set<string>) => void,
  ) {}

  coreUrl(): string {
    const { host, port } = this.services.config.core;
    return `wss://${host}:${port}`;
  }

  addUser(caller: Identity, params: ParamsOf<TerminalMethods, 'admin.user.add'>): ResultOf<TerminalMethods, 'admin.user.add'> {
    if (!USER_NAME_PATTERN.test(params.name)) throw new RpcError(ErrorCode.InvalidParams, `"${params.name}" is not a valid user name`);
    if (params.admin && params.monitor) throw new RpcError(ErrorCode.InvalidParams, 'a certificate is for an admin or a monitor, not both');
    const bundle = issueUserBundle(this.services.spool, this.coreUrl(), params.name, params.admin ? 'admin' : params.monitor ? 'monitor' : 'user');
    this.services.logger.info({ by: caller.name, user: bundle.name, role: bundle.role, serial: bundle.serial }, 'user certificate issued');
    return { name: bundle.name, role: bundle.role, certPem: bundle.certPem, keyPem: bundle.keyPem, caPem: bundle.caPem, coreUrl: bundle.coreUrl };
  }

  revokeUser(caller: Identity, params: ParamsOf<TerminalMethods, 'admin.user.revoke'>): ResultOf<TerminalMethods, 'admin.user.revoke'> {
    let serials: string[];
    try {
      serials = revokeUser(this.services.spool, this.revocations, params.name);
    } catch (error) {
      throw new RpcError(ErrorCode.NotFound, (error as Error).message);
    }
    this.disconnect(new Set(serials));
    this.services.logger.warn({ by: caller.name, user: params.name, serials }, 'user certificates revoked');
    return { name: params.name, serials };
  }
}
