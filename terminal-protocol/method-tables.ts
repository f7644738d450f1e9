import { gateMethods } from './gate-methods.js';
import type { MethodTable } from './method.js';
import { terminalMethods } from './terminal-methods.js';

/**
 * The method tables served on the wire, by name. A decoder thread cannot receive schemas (they hold
 * functions), so it is told a table's name and imports the table itself.
 */
export const methodTables: Readonly<Record<string, MethodTable>> = { terminal: terminalMethods, gate: gateMethods };

/** The name of a served table, or null for one this module does not know (decoded on the event loop). */
export const methodTableName = (table: MethodTable): string | null =>
  Object.entries(methodTables).find(([, known]) => known === table)?.[0] ?? null;
