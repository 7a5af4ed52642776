/**
 * One redrawn line at the bottom of a terminal: a spinner or a progress bar.
 *
 * Every draw is a carriage return, text cut to the terminal's current width minus one, and
 * erase-to-end-of-line, so the line can never wrap and nothing ever counts wrapped rows. That
 * is the class of bug this replaces: ora divides the text width by `columns` to know how many
 * rows to clear, and a pseudo-terminal reporting 0 columns made that Infinity (a run that never
 * ended, rewriting lines at full CPU); cli-progress wrote whole lines and relied on the terminal
 * to cut them. Below MIN_DRAW_COLUMNS the line is not drawn at all and the caller prints plain
 * lines instead, also when the terminal shrinks in the middle of a run.
 */
export const MIN_DRAW_COLUMNS = 20;

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const FRAME_MS = 100;

/** `text` cut to at most `width` characters, ending in … when cut. */
export function fit(text: string, width: number): string {
  const chars = [...text];
  if (chars.length <= width) return text;
  return width <= 1 ? chars.slice(0, Math.max(0, width)).join('') : chars.slice(0, width - 1).join('') + '…';
}

/**
 * `text` broken at spaces into lines of at most `width` characters (a word longer than that is
 * cut): warnings are wrapped, not cut, so nothing in them is lost.
 */
export function wrap(text: string, width: number): string[] {
  if (width < 1 || [...text].length <= width) return [text];
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const candidate = line === '' ? word : `${line} ${word}`;
    if ([...candidate].length <= width) line = candidate;
    else {
      if (line !== '') lines.push(line);
      line = word;
      while ([...line].length > width) {
        lines.push([...line].slice(0, width).join(''));
        line = [...line].slice(width).join('');
      }
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** Columns usable on this stream, or undefined when it is not a terminal that reports a size. */
export function columnsOf(stream: NodeJS.WriteStream): number | undefined {
  return stream.isTTY && stream.columns > 0 ? stream.columns : undefined;
}

export function canDraw(stream: NodeJS.WriteStream): boolean {
  return (columnsOf(stream) ?? 0) >= MIN_DRAW_COLUMNS;
}

export class StatusLine {
  private text = '';
  private spinning = false;
  private drawn = false;
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly paintFrame: (frame: string) => string,
  ) {}

  /** Shows a spinner before `text`; returns false when the terminal is too narrow to draw. */
  spin(text: string): boolean {
    this.text = text;
    this.spinning = true;
    if (!this.timer) {
      this.timer = setInterval(() => {
        this.frame = (this.frame + 1) % FRAMES.length;
        this.draw();
      }, FRAME_MS);
      this.timer.unref();
    }
    return this.draw();
  }

  /** Shows `text` as is (a bar the caller composed to `width()`); false when it cannot be drawn. */
  show(text: string): boolean {
    this.stopTimer();
    this.text = text;
    this.spinning = false;
    return this.draw();
  }

  /** Columns the caller may fill (one is kept free so the cursor never wraps). */
  width(): number {
    return (columnsOf(this.stream) ?? 0) - 1;
  }

  get active(): boolean {
    return this.drawn;
  }

  /** A finished line above the status line, which is redrawn below it. */
  print(line: string): void {
    const wasDrawn = this.drawn;
    this.erase();
    this.stream.write(line + '\n');
    if (wasDrawn) this.draw();
  }

  /** Erases the line and forgets it. */
  stop(): void {
    this.stopTimer();
    this.erase();
    this.text = '';
    this.spinning = false;
  }

  private draw(): boolean {
    if (!canDraw(this.stream) || this.text === '') {
      this.erase();
      return false;
    }
    const width = this.width();
    const line = this.spinning ? `${this.paintFrame(FRAMES[this.frame])} ${fit(this.text, width - 2)}` : fit(this.text, width);
    this.stream.write(`\r${line}\u001b[K`);
    this.drawn = true;
    return true;
  }

  private erase(): void {
    if (this.drawn) this.stream.write('\r\u001b[K');
    this.drawn = false;
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
