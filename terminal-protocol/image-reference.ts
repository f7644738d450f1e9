/**
 * The grammar of a container image reference, `[registry[:port]/]name[:tag][@digest]`, as the OCI
 * distribution reference defines it (github.com/distribution/reference, regexp.go). A reference that
 * matches starts with a letter or digit and holds no blank or control character: a container runtime can never
 * read it as an option (`--privileged`) or split it into two words.
 */

const pathComponent = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const domain = `(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const name = `(?:${domain}/)?${pathComponent}(?:/${pathComponent})*`;
const tag = '[\\w][\\w.-]{0,127}';
const digest = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const REFERENCE = new RegExp(`^(${name})(?::${tag})?(?:@${digest})?$`);

/** The longest repository name the distribution spec allows. */
const MAX_NAME_LENGTH = 255;

/** What is wrong with `reference` as a container image reference, or null when it is one. Pure. */
export function imageReferenceProblem(reference: string): string | null {
  if (reference.startsWith('-')) return 'starts with "-": an image name, never an option';
  if (/[\s\x00-\x1f\x7f]/.test(reference)) return 'contains a blank or a control character';
  const m = REFERENCE.exec(reference);
  if (!m) return 'is not an image reference ([registry[:port]/]name[:tag][@digest], name in lower case)';
  if (m[1]!.length > MAX_NAME_LENGTH) return `has a name longer than ${MAX_NAME_LENGTH} characters`;
  return null;
}

export const isImageReference = (reference: string): boolean => imageReferenceProblem(reference) === null;
