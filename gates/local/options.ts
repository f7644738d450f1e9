import { z } from 'zod';
import { LocalFlavorConfig } from '../../spool-bootstrap/config.js';

/** `gates[].options` of a local gate. */
export const LocalGateOptions = z
  .object({
    /** The node sizes offered (nothing is enforced: a node is a directory on this machine). */
    flavors: z.array(LocalFlavorConfig).min(1),
  })
  .strict()
  .superRefine((options, ctx) => {
    const seen = new Set<string>();
    options.flavors.forEach((flavor, i) => {
      if (seen.has(flavor.name)) ctx.addIssue({ code: 'custom', path: ['flavors', i, 'name'], message: `flavor "${flavor.name}" is listed twice` });
      seen.add(flavor.name);
    });
  });
export type LocalGateOptions = z.infer<typeof LocalGateOptions>;

/** Validates the options; the error names the gate and every bad key. */
export function parseLocalGateOptions(raw: unknown, gateName: string): LocalGateOptions {
  const result = LocalGateOptions.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  gates.${gateName}.options.${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new Error(`invalid options of local gate "${gateName}":\n${lines.join('\n')}`);
}
