/**
 * Reads the `input-files` directive of a job script: the local files `swm submit` must upload.
 * The core parses every directive itself; the terminal only needs to know which files to send (and
 * whether the script names itself), and it may not import the core, so this reader knows no more.
 *
 *   #SWM input-files data.csv, params.json
 *   #SWM input-files images/        (several lines add up; space or comma separated)
 */
const directiveLine = /^#SWM\s+([a-z][a-z0-9-]*)(?:\s+(.*))?$/i;

function directiveValues(script: string, key: string): string[] {
  const values: string[] = [];
  for (const line of script.split(/\r?\n/)) {
    const match = directiveLine.exec(line.trim());
    if (match && match[1]!.toLowerCase() === key) values.push((match[2] ?? '').trim());
  }
  return values;
}

export function readInputFilesDirective(script: string): string[] {
  return directiveValues(script, 'input-files').flatMap((value) => value.split(/[\s,]+/).filter(Boolean));
}

/** True when the script names the job itself (`#SWM name ...`), so the terminal need not. */
export const scriptNamesItself = (script: string): boolean => directiveValues(script, 'name').some(Boolean);
