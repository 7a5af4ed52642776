import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { OnnxTrainer } from '../src/engines/onnx-trainer.ts';
import { fineTuneLoop, type ImageSource } from '../src/fine-tune/loop.ts';

/**
 * A stand-in trainer whose validation loss follows `curve` (one value per epoch after the
 * start), as a real network's does under one-cycle: worse while the rate warms up, then better.
 */
function scripted(curve: number[], stepsPerEpoch: number) {
  let steps = 0;
  const loss = () => (steps === 0 ? 1 : curve[Math.ceil(steps / stepsPerEpoch) - 1]);
  const trainer = {
    groups: 1,
    classes: 2,
    async step() {
      steps++;
      return { loss: 0.5 };
    },
    // Logits (z, 0) for label 0 give a cross-entropy of log(1 + e^−z): solve for the scripted loss.
    async logits(_images: Float32Array, count: number) {
      const z = -Math.log(Math.exp(loss()) - 1);
      return Float32Array.from({ length: count * 2 }, (_, i) => (i % 2 === 0 ? z : 0));
    },
    snapshot: () => [Float32Array.of(steps)],
    restore() {},
  };
  return trainer as unknown as OnnxTrainer;
}

const images = (count: number): ImageSource => ({ count, labels: new Array(count).fill(0), batch: async (indices) => new Float32Array(indices.length) });

test('early stopping waits for the warm-up: a validation loss that rises while the rate climbs does not stop the run', async () => {
  // 12 epochs: the one-cycle warm-up is the first 3; they are worse than the start, then it improves.
  const curve = [1.2, 1.3, 1.25, 0.9, 0.7, 0.6, 0.5, 0.45, 0.42, 0.41, 0.405, 0.4];
  const result = await fineTuneLoop(scripted(curve, 2), images(8), images(4), { epochs: 12, batchSize: 4, lr: 1e-3, seed: 1, patience: 2 });
  assert.equal(result.epochs, 12, `stopped after ${result.epochs} epochs`);
  assert.equal(result.bestEpoch, 12);
  assert.ok(Math.abs(result.after!.loss - 0.4) < 1e-6);
  // After the warm-up, patience still stops a run that no longer improves.
  const stalls = [1.2, 1.3, 1.25, 0.9, 0.95, 0.96, 0.97, 0.5, 0.4, 0.3, 0.2, 0.1];
  const stopped = await fineTuneLoop(scripted(stalls, 2), images(8), images(4), { epochs: 12, batchSize: 4, lr: 1e-3, seed: 1, patience: 2 });
  assert.equal(stopped.epochs, 6);
  assert.equal(stopped.bestEpoch, 4);
});
