import * as tf from '@tensorflow/tfjs';

/**
 * Stand-in for darknet-tiny when ../shared is absent: four strided 3×3 convolutions, no
 * dense top (so building it costs next to nothing and the process's peak memory is the
 * pipeline's, not the network's). Features: the last convolution, 14×14×128 like darknet's cut.
 */
export const SMALL_NET_LAYER = 'conv4';

export function smallNet(): tf.LayersModel {
  const input = tf.input({ shape: [224, 224, 3], name: 'input_1' });
  let x: tf.SymbolicTensor = input;
  [16, 32, 64, 128].forEach((filters, i) => {
    x = tf.layers.conv2d({ name: `conv${i + 1}`, filters, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }).apply(x) as tf.SymbolicTensor;
  });
  return tf.model({ inputs: input, outputs: x, name: 'small_net' });
}
