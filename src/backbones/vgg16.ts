import type * as tf from '../tf.ts';
import { VGG_TOP_LAYERS, vggNetwork, type VggOptions } from './vgg.ts';

/**
 * VGG16 exactly as keras.applications.vgg16 defines it: same layer names and shapes, so the
 * official Keras weight files load by name. Conv base: 14,714,688 parameters; with the
 * ImageNet top (flatten, fc1, fc2, predictions): 138,357,544.
 */
export const VGG16_WEIGHTS = {
  notop: {
    file: 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    md5: '6d6bbae143d832006294945121d1f1fc',
    bytes: 58_889_256,
  },
  full: {
    file: 'vgg16_weights_tf_dim_ordering_tf_kernels.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5',
    md5: '64373286793e3c8b2b4e3219cbf3544b',
    bytes: 553_467_096,
  },
} as const;

export const VGG16_TOP_LAYERS = VGG_TOP_LAYERS;


export function vgg16(opts: VggOptions = {}): tf.LayersModel {
  return vggNetwork('vgg16', [2, 2, 3, 3, 3], opts);
}
