/**
 * The server's counters in the Prometheus text exposition format (version 0.0.4): a handful
 * of fixed series, so no client library is needed to write them.
 */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count++;
    this.buckets.forEach((le, i) => {
      if (value <= le) this.counts[i]++;
    });
  }
  lines(name: string): string[] {
    return [
      ...this.buckets.map((le, i) => `${name}_bucket{le="${le}"} ${this.counts[i]}`),
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    ];
  }
}

export class ServeMetrics {
  private readonly requests = new Map<string, number>();
  readonly latency = new Histogram(LATENCY_BUCKETS);
  readonly batchSize = new Histogram(BATCH_BUCKETS);
  private images = 0;
  private readonly reloads = { ok: 0, failed: 0 };

  constructor(private readonly gauges: () => { queueDepth: number; inFlight: number }) {}

  request(path: string, status: number, seconds: number): void {
    const key = `path="${path}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    if (path === '/predict') this.latency.observe(seconds);
  }

  batch(size: number): void {
    this.batchSize.observe(size);
    this.images += size;
  }

  reload(ok: boolean): void {
    this.reloads[ok ? 'ok' : 'failed']++;
  }

  /** Requests answered with `status` on `path` so far. */
  answered(path: string, status: number): number {
    return this.requests.get(`path="${path}",status="${status}"`) ?? 0;
  }

  text(): string {
    const { queueDepth, inFlight } = this.gauges();
    const block = (name: string, type: string, help: string, lines: string[]) => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines];
    return [
      ...block('finetune_requests_total', 'counter', 'HTTP requests answered, by path and status code.', [...this.requests].map(([labels, n]) => `finetune_requests_total{${labels}} ${n}`)),
      ...block('finetune_request_duration_seconds', 'histogram', 'Time from a /predict request arriving to its answer.', this.latency.lines('finetune_request_duration_seconds')),
      ...block('finetune_batch_size', 'histogram', 'Images per forward pass of the backbone.', this.batchSize.lines('finetune_batch_size')),
      ...block('finetune_images_total', 'counter', 'Images classified.', [`finetune_images_total ${this.images}`]),
      ...block('finetune_queue_depth', 'gauge', 'Images decoded and waiting for a batch.', [`finetune_queue_depth ${queueDepth}`]),
      ...block('finetune_requests_in_flight', 'gauge', '/predict requests received and not yet answered.', [`finetune_requests_in_flight ${inFlight}`]),
      ...block('finetune_model_reloads_total', 'counter', 'Model reloads (SIGHUP or POST /reload), by result.', [
        `finetune_model_reloads_total{result="ok"} ${this.reloads.ok}`,
        `finetune_model_reloads_total{result="failed"} ${this.reloads.failed}`,
      ]),
      '',
    ].join('\n');
  }
}
