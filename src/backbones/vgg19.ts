import type * as tf from '../tf.ts';
import { VGG_TOP_LAYERS, vggNetwork, type VggOptions } from './vgg.ts';

/**
 * VGG19 exactly as keras.applications.vgg19 defines it: VGG16 with a fourth convolution in
 * blocks 3–5, same layer names scheme, so the official Keras weight files load by name.
 * Conv base: 20,024,384 parameters; with the ImageNet top (flatten, fc1, fc2, predictions):
 * 143,667,240. Preprocessing: caffe.
 */
export const VGG19_WEIGHTS = {
  notop: {
    file: 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    md5: '253f8cb515780f3b799900260a226db6',
    bytes: 80_134_624,
  },
  full: {
    file: 'vgg19_weights_tf_dim_ordering_tf_kernels.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5',
    md5: 'cbe5617147190e668d6c5d5026f83318',
    bytes: 574_710_816,
  },
} as const;

export const VGG19_TOP_LAYERS = VGG_TOP_LAYERS;


export function vgg19(opts: VggOptions = {}): tf.LayersModel {
  return vggNetwork('vgg19', [2, 2, 4, 4, 4], opts);
}
