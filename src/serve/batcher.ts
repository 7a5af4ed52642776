/** The queue already holds as many items as it may: the caller should answer 503. */
export class QueueFullError extends Error {
  constructor(readonly depth: number) {
    super(`the queue is full (${depth} images waiting); retry shortly`);
    this.name = 'QueueFullError';
  }
}

export interface BatcherOptions {
  /** Items per call of the batch function. */
  maxBatch: number;
  /** How long the first item of a batch waits for others while the engine is idle. */
  maxWaitMs: number;
  /** Items that may wait at once; more are refused with QueueFullError. */
  maxQueue: number;
  /** Batches handed to the batch function at once (2: a full next batch is prepared while one runs). */
  inFlight?: number;
  /** Called after each batch with its size and how long it ran. */
  onBatch?: (size: number, seconds: number) => void;
}

interface Entry<I, O> {
  item: I;
  since: number;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * Gathers items submitted one by one into batches for a function that is cheaper per item on
 * many (a backbone's forward pass). At most `inFlight` batches run at once; items that arrive
 * meanwhile form the next one, so under load batches fill up by themselves and `maxWaitMs`
 * matters only when the engine is idle.
 */
export class Batcher<I, O> {
  private readonly queue: Entry<I, O>[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly runBatch: (items: I[]) => Promise<O[]>,
    private readonly opts: BatcherOptions,
  ) {}

  /** Items waiting for a batch (not those in the batch that runs). */
  get depth(): number {
    return this.queue.length;
  }

  get full(): boolean {
    return this.queue.length >= this.opts.maxQueue;
  }

  /** Resolves to the item's result; rejects with the signal's reason if it fires while the item waits. */
  submit(item: I, signal?: AbortSignal): Promise<O> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.full) return Promise.reject(new QueueFullError(this.queue.length));
    return new Promise<O>((resolve, reject) => {
      const entry: Entry<I, O> = { item, since: performance.now(), resolve, reject, signal };
      if (signal) {
        entry.onAbort = () => {
          const at = this.queue.indexOf(entry);
          if (at < 0) return; // already in a batch: its result is simply not used
          this.queue.splice(at, 1);
          reject(signal.reason);
          this.notifyIfIdle();
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.queue.push(entry);
      this.schedule();
    });
  }

  /** Resolves once nothing waits and no batch runs. */
  idle(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private schedule(): void {
    if (this.running >= (this.opts.inFlight ?? 1) || this.queue.length === 0) return;
    const full = this.queue.length >= this.opts.maxBatch;
    // While a batch runs, only a full one goes next to it: small batches would cost throughput.
    if (this.running > 0 && !full) return;
    const waited = performance.now() - this.queue[0].since;
    if (full || waited >= this.opts.maxWaitMs) {
      this.start();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, this.opts.maxWaitMs - waited);
    }
  }

  private start(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    for (const entry of batch) if (entry.onAbort) entry.signal?.removeEventListener('abort', entry.onAbort);
    const started = performance.now();
    this.running++;
    void (async () => {
      try {
        const results = await this.runBatch(batch.map((e) => e.item));
        batch.forEach((entry, i) => entry.resolve(results[i]));
      } catch (err) {
        for (const entry of batch) entry.reject(err);
      } finally {
        this.opts.onBatch?.(batch.length, (performance.now() - started) / 1000);
      }
    })().finally(() => {
      this.running--;
      this.schedule();
      this.notifyIfIdle();
    });
  }

  private notifyIfIdle(): void {
    if (this.running > 0 || this.queue.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    waiters.forEach((r) => r());
  }
}
