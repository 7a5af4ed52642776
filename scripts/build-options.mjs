// esbuild's options for dist/, shared by the build and by the test that checks the bundle.
export const BUILD_OPTIONS = {
  entryPoints: ['src/cli/main.ts', 'src/index.ts'],
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
};
