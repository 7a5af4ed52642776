import { readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { DOGSCATS_DIR, sharedHas } from './paths.ts';

export interface BenchImages {
  paths: string[];
  /** Where they came from, for the table's notes. */
  source: string;
}

/**
 * `count` JPEGs: real photos of varied size from ../shared/data/dogscats (cats and dogs
 * alternating, in a fixed order) when present, else photo-like JPEGs drawn here.
 */
export async function benchJpegs(count: number, scratch: string): Promise<BenchImages> {
  if (sharedHas(DOGSCATS_DIR)) {
    const folders = ['train/cats', 'train/dogs', 'valid/cats', 'valid/dogs'].map((f) => path.join(DOGSCATS_DIR, f));
    const lists = folders.map((dir) => readdirSync(dir).filter((f) => /\.jpe?g$/i.test(f)).sort().map((f) => path.join(dir, f)));
    const [cats, dogs] = [[...lists[0], ...lists[2]], [...lists[1], ...lists[3]]];
    const paths: string[] = [];
    for (let i = 0; paths.length < count && (i < cats.length || i < dogs.length); i++) {
      if (i < cats.length) paths.push(cats[i]);
      if (i < dogs.length && paths.length < count) paths.push(dogs[i]);
    }
    if (paths.length >= count) return { paths, source: `../shared/data/dogscats (${count} real JPEGs)` };
  }
  return { paths: await drawJpegs(count, path.join(scratch, 'drawn')), source: `${count} JPEGs drawn with sharp (../shared absent)` };
}

/** Smooth gradients plus noise, 120–500 px a side, quality 90: decodes like a photo of that size. */
async function drawJpegs(count: number, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  let state = 12345;
  const rand = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 4294967296);
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const width = 120 + Math.floor(rand() * 380);
    const height = 120 + Math.floor(rand() * 380);
    const px = new Uint8ClampedArray(width * height * 3);
    const [r, g, b] = [rand() * 255, rand() * 255, rand() * 255];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const o = (y * width + x) * 3;
        const noise = (rand() - 0.5) * 40;
        px[o] = r + (x / width) * 80 + noise;
        px[o + 1] = g + (y / height) * 80 + noise;
        px[o + 2] = b + ((x + y) / (width + height)) * 80 + noise;
      }
    }
    const file = path.join(dir, `img-${String(i).padStart(4, '0')}.jpg`);
    await sharp(Buffer.from(px.buffer), { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
    paths.push(file);
  }
  return paths;
}
