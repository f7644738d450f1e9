import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { restRouteTable } from '../core/rest/rest-routes.js';
import { imageView } from '../core/rest/sky-port-views.js';
import { adminBundle, type ClientBundle } from './harness/certs.js';
import { DIST, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { rest } from './harness/rest-client.js';

/** The subset of OpenAPI 3.0 schema objects the document uses. */
interface Schema {
  $ref?: string;
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  nullable?: boolean;
  enum?: unknown[];
  format?: string;
  minimum?: number;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
}

interface Operation {
  parameters?: { name: string; in: string }[];
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
}

type PathItem = Record<string, Operation> & { parameters?: { name: string; in: string }[] };

interface OpenApi {
  openapi: string;
  paths: Record<string, PathItem>;
  components: { schemas: Record<string, Schema> };
}

const document = JSON.parse(readFileSync(join(DIST, '..', 'core', 'rest', 'openapi.json'), 'utf8')) as OpenApi;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Check `value` against `schema`; returns what is wrong, one line per problem, with its JSON path. Strict
 * on purpose: an object property the document does not describe is a problem too, so that the document
 * cannot fall behind what the core returns.
 */
function validate(value: unknown, schema: Schema, path = '$'): string[] {
  if (schema.$ref) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    const target = document.components.schemas[name];
    return target ? validate(value, target, path) : [`${path}: unresolved ${schema.$ref}`];
  }
  if (value === null) return schema.nullable ? [] : [`${path}: null but not nullable`];
  const problems: string[] = [];
  const fail = (what: string) => problems.push(`${path}: ${what} (got ${JSON.stringify(value)?.slice(0, 80)})`);
  switch (schema.type) {
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) return [`${path}: not an object`];
      const record = value as Record<string, unknown>;
      for (const key of schema.required ?? []) if (!(key in record)) fail(`missing required "${key}"`);
      for (const [key, item] of Object.entries(record)) {
        const property = schema.properties?.[key];
        if (!property) fail(`undocumented property "${key}"`);
        else problems.push(...validate(item, property, `${path}.${key}`));
      }
      break;
    }
    case 'array':
      if (!Array.isArray(value)) return [`${path}: not an array`];
      value.forEach((item, i) => problems.push(...validate(item, schema.items ?? {}, `${path}[${i}]`)));
      break;
    case 'string':
      if (typeof value !== 'string') fail('not a string');
      else if (schema.format === 'uuid' && !UUID.test(value)) fail('not a uuid');
      else if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) fail('not a date-time');
      break;
    case 'integer':
      if (!Number.isInteger(value)) fail('not an integer');
      break;
    case 'number':
      if (typeof value !== 'number') fail('not a number');
      break;
    case 'boolean':
      if (typeof value !== 'boolean') fail('not a boolean');
      break;
    default:
      break;
  }
  if (schema.enum && !schema.enum.includes(value)) fail(`not one of ${JSON.stringify(schema.enum)}`);
  if (schema.minimum !== undefined && typeof value === 'number' && value < schema.minimum) fail(`below ${schema.minimum}`);
  return problems;
}

const documentedRoutes = (): string[] =>
  Object.entries(document.paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((key) => METHODS.includes(key))
      .map((method) => `${method.toUpperCase()} ${path}`),
  );

const operation = (method: string, path: string): Operation => document.paths[path]![method.toLowerCase()]!;

describe('OpenAPI document of the REST API (core/rest/openapi.json)', function () {
  this.timeout(60_000);

  it('is an OpenAPI 3 document whose every $ref resolves', () => {
    expect(document.openapi).to.match(/^3\./);
    const refs = JSON.stringify(document).match(/"\$ref":"[^"]+"/g) ?? [];
    for (const ref of refs) {
      const name = ref.slice(8, -1).replace('#/components/schemas/', '');
      expect(document.components.schemas, ref).to.have.property(name);
    }
  });

  it('documents every route of the implementation, and no route the implementation lacks', () => {
    const implemented = restRouteTable.map((r) => `${r.method} ${r.path}`).sort();
    expect(documentedRoutes().sort()).to.deep.equal(implemented);
  });

  it('declares every path parameter of every route', () => {
    for (const route of restRouteTable) {
      const item = document.paths[route.path]!;
      const declared = [...(item.parameters ?? []), ...(operation(route.method, route.path).parameters ?? [])]
        .filter((p) => p.in === 'path')
        .map((p) => p.name)
        .sort();
      const inPath = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!).sort();
      expect(declared, `${route.method} ${route.path}`).to.deep.equal(inPath);
    }
  });

  it('documents the image shape the core makes from a gate image (the local gate offers none to list live)', () => {
    const schema = operation('GET', '/user/image').responses['200']!.content!['application/json']!.schema;
    const images = [
      imageView({ id: 'img-1', name: 'ubuntu-22.04', remote: 'azure', kind: 'cloud' }),
      imageView({ id: 'img-2', name: 'jupyter', remote: 'azure', kind: 'container', comment: 'notebooks' }),
    ];
    expect(validate(images, schema)).to.deep.equal([]);
  });

  describe('against a live core', () => {
    let f: CoreFixture;
    let admin: ClientBundle;
    let jobId: string;

    before(async () => {
      f = await startFixture();
      admin = adminBundle(f.spool);
      // A running job, so that the node list and the job's node fields are not empty.
      const submitted = await rest(f.core.port, admin, '/user/job', { method: 'POST', body: '#!/bin/sh\n#SWM comment documented\necho out\nexec sleep 60\n' });
      expect(submitted.status, submitted.text).to.equal(200);
      jobId = submitted.text.split('\n')[0]!;
      await waitForJob(f.admin, jobId, (j) => j.state === 'R' && j.state_details === 'running');
    });
    after(async () => {
      await f?.stop();
    });

    it('answers every GET route with a body that matches its documented 200 response', async () => {
      const gets = restRouteTable.filter((r) => r.method === 'GET');
      expect(gets.length).to.be.greaterThan(5);
      for (const route of gets) {
        const path = route.path.replace('{id}', jobId);
        const r = await rest(f.core.port, admin, path);
        const where = `GET ${route.path}`;
        expect(r.status, `${where}: ${r.text}`).to.equal(200);
        const content = operation('GET', route.path).responses['200']!.content!;
        const type = String(r.headers['content-type']).split(';')[0]!;
        expect(content, `${where} answers ${type}`).to.have.property(type);
        if (type === 'application/json') {
          const body = r.json();
          expect(validate(body, content[type]!.schema), where).to.deep.equal([]);
          // The local gate offers no images: the image shape is checked on one made by the same view below.
          if (Array.isArray(body) && route.path !== '/user/image') expect(body, `${where} lists something to validate`).to.have.length.greaterThan(0);
        } else expect(r.text).to.be.a('string');
      }
    });

    it('answers errors with the documented Error body', async () => {
      const r = await rest(f.core.port, admin, `/user/job/${crypto.randomUUID()}`);
      expect(r.status).to.equal(404);
      const schema = operation('GET', '/user/job/{id}').responses['404']!.content!['application/json']!.schema;
      expect(validate(r.json(), schema)).to.deep.equal([]);
    });

    it('catches a body that breaks the schema (the validator is not vacuous)', async () => {
      const job = (await rest(f.core.port, admin, `/user/job/${jobId}`)).json<Record<string, unknown>>();
      const schema = operation('GET', '/user/job/{id}').responses['200']!.content!['application/json']!.schema;
      expect(validate({ ...job, state: 'X' }, schema)).to.have.length(1);
      expect(validate({ ...job, extra: 1 }, schema)[0]).to.contain('undocumented property "extra"');
      const { node_ips: _, ...missing } = job;
      expect(validate(missing, schema)[0]).to.contain('missing required "node_ips"');
    });
  });
});
