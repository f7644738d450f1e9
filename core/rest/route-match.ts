/** HTTP methods the REST API answers. */
export type HttpMethod = 'GET' | 'POST' | 'PATCH' | 'DELETE';

/** A route as the OpenAPI document spells it: `/user/job/{id}`. */
export interface RouteKey {
  method: HttpMethod;
  path: string;
}

export type RouteMatch<R extends RouteKey> =
  | { kind: 'found'; route: R; params: Record<string, string> }
  | { kind: 'no-path' }
  | { kind: 'no-method'; allow: HttpMethod[] };

const segments = (path: string): string[] => path.split('/').filter(Boolean);

/** Path parameters of `template` if `pathname` fits it, else null. `{name}` matches one non-empty segment. */
function fit(template: string, pathname: string): Record<string, string> | null {
  const want = segments(template);
  const got = segments(pathname);
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = got[i]!;
    if (w.startsWith('{') && w.endsWith('}')) {
      let value: string;
      try {
        value = decodeURIComponent(g);
      } catch {
        return null;
      }
      params[w.slice(1, -1)] = value;
    } else if (w !== g) return null;
  }
  return params;
}

/**
 * Which route answers `method pathname`. Pure. A path no route has is "no-path" (404); a known path asked
 * with another method is "no-method" (405, with the methods it does take). A trailing slash is ignored.
 */
export function matchRoute<R extends RouteKey>(routes: readonly R[], method: string, pathname: string): RouteMatch<R> {
  const allow: HttpMethod[] = [];
  for (const route of routes) {
    const params = fit(route.path, pathname);
    if (!params) continue;
    if (route.method === method) return { kind: 'found', route, params };
    allow.push(route.method);
  }
  return allow.length ? { kind: 'no-method', allow } : { kind: 'no-path' };
}
