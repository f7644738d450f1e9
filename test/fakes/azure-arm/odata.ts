import { badRequest } from './arm-error.js';

/**
 * The small part of OData `$filter` that ARM list calls and the retail prices API accept from the gate:
 * `field eq 'value'` clauses joined by `and`. Anything else is rejected, as Azure rejects filters it
 * does not support, so a gate sending a richer filter finds out here rather than in production.
 */
export function parseEqFilter(filter: string | null): Map<string, string> {
  const clauses = new Map<string, string>();
  if (filter === null || filter.trim() === '') return clauses;
  for (const clause of filter.split(/\s+and\s+/i)) {
    const m = /^\s*([A-Za-z][\w/]*)\s+eq\s+'((?:[^']|'')*)'\s*$/i.exec(clause);
    if (!m) throw badRequest('InvalidFilterInQueryString', `Invalid $filter '${filter}': unsupported clause '${clause.trim()}'.`);
    clauses.set(m[1]!.toLowerCase(), m[2]!.replace(/''/g, "'"));
  }
  return clauses;
}
