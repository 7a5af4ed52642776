// One onnxruntime session on its own thread. onnxruntime-node's run() blocks the thread that
// calls it; here it blocks this worker, so the main thread keeps decoding images and answering
// Ctrl-C while the backbone runs. Plain JavaScript: workers do not inherit the tsx loader.
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

let session;

parentPort.on('message', async (message) => {
  try {
    if (message.type === 'init') {
      session = await ort.InferenceSession.create(message.bytes, message.options);
      parentPort.postMessage({ type: 'ready' });
    } else if (message.type === 'run') {
      const input = new ort.Tensor('float32', message.images, message.dims);
      const results = await session.run({ [message.inputName]: input });
      const output = results[message.outputName];
      const features = Float32Array.from(output.data);
      output.dispose();
      parentPort.postMessage({ type: 'result', id: message.id, features }, [features.buffer]);
    }
  } catch (err) {
    parentPort.postMessage({ type: 'error', id: message.id, message: err instanceof Error ? err.message : String(err) });
  }
});
