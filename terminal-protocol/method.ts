import { z } from 'zod';
import type { Role } from './common.js';

/** One RPC method: its params and result schemas and the certificate roles allowed to call it. */
export interface MethodSpec<P extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  params: P;
  result: R;
  roles: readonly Role[];
  description: string;
}

export const method = <P extends z.ZodType, R extends z.ZodType>(
  description: string,
  roles: readonly Role[],
  params: P,
  result: R,
): MethodSpec<P, R> => ({ description, roles, params, result });

export type MethodTable = Record<string, MethodSpec>;
export type NotificationTable = Record<string, z.ZodType>;

export type ParamsOf<T extends MethodTable, M extends keyof T> = z.input<T[M]['params']>;
export type ResultOf<T extends MethodTable, M extends keyof T> = z.output<T[M]['result']>;
export type NotificationOf<T extends NotificationTable, N extends keyof T> = z.output<T[N]>;
