/**
 * One argument as a POSIX shell reads it back unchanged: as is when it holds only characters
 * no shell treats specially, else in single quotes (a quote inside written '\'').
 */
export function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_/.,:@%+=-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}
