#!/usr/bin/env node
/** Writes the JSON Schema of every method and notification, for clients written in other languages. */
import { writeFileSync } from 'node:fs';
import { z } from 'zod';
import { gateMethods, gateNotifications } from './gate-methods.js';
import type { MethodTable, NotificationTable } from './method.js';
import { terminalMethods, terminalNotifications } from './terminal-methods.js';
import { ErrorCode } from './errors.js';

const methodsSchema = (table: MethodTable) =>
  Object.fromEntries(
    Object.entries(table).map(([name, spec]) => [
      name,
      {
        description: spec.description,
        roles: spec.roles,
        params: z.toJSONSchema(spec.params, { io: 'input', unrepresentable: 'any' }),
        result: z.toJSONSchema(spec.result, { io: 'output', unrepresentable: 'any' }),
      },
    ]),
  );
const notificationsSchema = (table: NotificationTable) =>
  Object.fromEntries(Object.entries(table).map(([name, s]) => [name, z.toJSONSchema(s, { unrepresentable: 'any' })]));

export function protocolSchema(): object {
  return {
    $comment: 'Generated from terminal-protocol/*.ts by `make protocol-schema`; do not edit.',
    transport: { websocket: { path: '/ws', subprotocol: 'skyport.v1' }, envelope: 'JSON-RPC 2.0' },
    errorCodes: ErrorCode,
    terminal: { methods: methodsSchema(terminalMethods), notifications: notificationsSchema(terminalNotifications) },
    gate: { methods: methodsSchema(gateMethods), notifications: notificationsSchema(gateNotifications) },
  };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const out = process.argv[2] ?? 'terminal-protocol/schema.json';
  writeFileSync(out, JSON.stringify(protocolSchema(), null, 2) + '\n');
  console.log(`wrote ${out}`);
}
