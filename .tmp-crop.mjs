import sharp from 'sharp';
const [,, top, height, out] = process.argv;
await sharp('test/artifacts/report.png').extract({ left: 0, top: +top, width: 1280, height: +height }).toFile(out);
