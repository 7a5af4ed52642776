/** The serve batcher on its own: batch forming, the wait, the queue limit, leaving the queue. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Batcher, QueueFullError } from '../src/serve/batcher.ts';

/** A batch function that records its batches and answers each item doubled, after `ms`. */
function doubling(ms = 20) {
  const batches: number[][] = [];
  let running = 0;
  let mostAtOnce = 0;
  const run = async (items: number[]) => {
    batches.push(items);
    mostAtOnce = Math.max(mostAtOnce, ++running);
    await new Promise((r) => setTimeout(r, ms));
    running--;
    return items.map((x) => x * 2);
  };
  return { run, batches, mostAtOnce: () => mostAtOnce };
}

describe('serve batcher', () => {
  test('items submitted together form one batch; each gets its own answer', async () => {
    const f = doubling();
    const b = new Batcher(f.run, { maxBatch: 8, maxWaitMs: 30, maxQueue: 100 });
    const answers = await Promise.all([1, 2, 3, 4, 5].map((x) => b.submit(x)));
    assert.deepEqual(answers, [2, 4, 6, 8, 10]);
    assert.deepEqual(f.batches, [[1, 2, 3, 4, 5]]);
  });

  test('a full batch starts without waiting; one item alone waits maxWaitMs at most', async () => {
    const f = doubling(1);
    const b = new Batcher(f.run, { maxBatch: 2, maxWaitMs: 10_000, maxQueue: 100 });
    const started = performance.now();
    assert.deepEqual(await Promise.all([b.submit(1), b.submit(2)]), [2, 4]);
    assert.ok(performance.now() - started < 1000);
    const alone = new Batcher(f.run, { maxBatch: 8, maxWaitMs: 50, maxQueue: 100 });
    const t = performance.now();
    assert.equal(await alone.submit(7), 14);
    const waited = performance.now() - t;
    assert.ok(waited >= 45 && waited < 1000, `waited ${waited.toFixed(0)} ms`);
  });

  test('items arriving while a batch runs form the next batch; a second runs beside it only when full', async () => {
    const f = doubling(100);
    const b = new Batcher(f.run, { maxBatch: 4, maxWaitMs: 0, maxQueue: 100, inFlight: 2 });
    const first = b.submit(0);
    await new Promise((r) => setTimeout(r, 10));
    const rest = [1, 2, 3].map((x) => b.submit(x));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(f.batches.length, 1, 'a part batch started beside the running one');
    const full = [4, 5, 6, 7].map((x) => b.submit(x));
    await Promise.all([first, ...rest, ...full]);
    assert.deepEqual(f.batches[0], [0]);
    assert.deepEqual(f.batches[1], [1, 2, 3, 4]);
    assert.equal(f.mostAtOnce(), 2);
  });

  test('a full queue refuses with QueueFullError; an aborted item leaves the queue', async () => {
    const f = doubling(50);
    const b = new Batcher(f.run, { maxBatch: 1, maxWaitMs: 0, maxQueue: 2 });
    const running = b.submit(1);
    const controller = new AbortController();
    const waiting = b.submit(2, controller.signal);
    const third = b.submit(3);
    await assert.rejects(b.submit(4), QueueFullError);
    assert.equal(b.depth, 2);
    controller.abort(new Error('client gone'));
    await assert.rejects(waiting, /client gone/);
    assert.equal(b.depth, 1);
    assert.deepEqual(await Promise.all([running, third]), [2, 6]);
    assert.deepEqual(f.batches, [[1], [3]]);
    await b.idle();
  });

  test('a failing batch rejects its items only; the next batch runs', async () => {
    let calls = 0;
    const b = new Batcher(
      async (items: number[]) => {
        if (calls++ === 0) throw new Error('engine failed');
        return items;
      },
      { maxBatch: 1, maxWaitMs: 0, maxQueue: 10 },
    );
    const [a, c] = [b.submit(1), b.submit(2)];
    await assert.rejects(a, /engine failed/);
    assert.equal(await c, 2);
  });
});
