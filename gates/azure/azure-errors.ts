/** What the gate needs to know about an error from an Azure SDK call. */

const MAX_MESSAGE = 400;

/** The HTTP status of a failed Azure request (RestError.statusCode), if the error is one. */
export const httpStatusOf = (error: unknown): number | undefined => {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
};

export const isNotFound = (error: unknown): boolean => httpStatusOf(error) === 404;

/**
 * One line for logs, events and the failure tag: Azure's error code and message. Only these two
 * fields are read: a RestError also holds the request (with its Authorization header) and the
 * response, which must never be printed.
 */
export function describeAzureError(error: unknown): string {
  if (!(error instanceof Error)) return String(error).slice(0, MAX_MESSAGE);
  const code = (error as { code?: unknown }).code;
  const text = typeof code === 'string' && code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= MAX_MESSAGE ? line : `${line.slice(0, MAX_MESSAGE - 1)}…`;
}
