/** Rewrites of a Keras/tfjs topology (the JSON both .h5 files and tfjs folders carry), before tfjs builds it. */

interface LayerConfig {
  class_name: string;
  config: Record<string, unknown> & { name?: string };
  inbound_nodes?: unknown[];
}
interface GraphConfig {
  layers?: LayerConfig[];
  output_layers?: unknown[];
}

/**
 * A convolutional base runs at any input size: only its declared input shape says otherwise.
 * Rewrites that shape in a Keras/tfjs topology and drops what a Flatten fixes to the old size
 * (the Flatten and every layer after it, as Keras's include_top=False does), so a whole model
 * with its classifier still serves features at another size.
 */
export function withInputSize(topology: unknown, size: readonly [number, number]): unknown {
  const copy = structuredClone(topology) as { model_config?: { config?: unknown }; config?: unknown };
  const holder = (copy.model_config ?? copy) as { config?: unknown };
  // Old Keras saves a Sequential model's config as the bare list of layers.
  const graph = (Array.isArray(holder.config) ? { layers: holder.config } : holder.config) as GraphConfig | undefined;
  let resized = false;
  for (const layer of graph?.layers ?? []) {
    if (layer.class_name !== 'InputLayer' && !('batch_input_shape' in layer.config)) continue;
    const key = 'batch_input_shape' in layer.config ? 'batch_input_shape' : 'batch_shape';
    const shape = layer.config[key] as (number | null)[] | undefined;
    if (shape?.length !== 4) continue;
    resized ||= shape[1] !== size[0] || shape[2] !== size[1];
    layer.config[key] = [shape[0] ?? null, size[0], size[1], shape[3]];
  }
  if (graph?.layers && resized) {
    const kept = withoutFixedSizeTop(graph);
    if (Array.isArray(holder.config)) holder.config = kept.layers;
    else holder.config = kept;
  }
  return copy;
}

/** The graph without its Flatten layers and all that depends on them; outputs move to what fed them. */
function withoutFixedSizeTop(graph: GraphConfig): GraphConfig {
  const layers = graph.layers!;
  const name = (l: LayerConfig) => l.config.name ?? '';
  const first = layers.findIndex((l) => l.class_name === 'Flatten');
  if (first < 0) return graph;
  if (!graph.output_layers) return { ...graph, layers: layers.slice(0, first) };
  const inputsOf = (l: LayerConfig): string[] =>
    (l.inbound_nodes ?? []).flatMap((node) => (Array.isArray(node) ? node : [])).flatMap((entry) => (Array.isArray(entry) && typeof entry[0] === 'string' ? [entry[0]] : []));
  const dropped = new Set<string>();
  for (const layer of layers) {
    if (layer.class_name === 'Flatten' || inputsOf(layer).some((n) => dropped.has(n))) dropped.add(name(layer));
  }
  const feeding = inputsOf(layers[first])[0];
  // A graph whose inbound nodes this reader does not follow is left whole rather than guessed at.
  if (feeding === undefined) return graph;
  return { ...graph, layers: layers.filter((l) => !dropped.has(name(l))), output_layers: [[feeding, 0, 0]] };
}
