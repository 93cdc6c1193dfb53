// Interop helper for the reencrypt tests, using Node's crypto.
//
//   node interop.js encrypt|decrypt KEYFILE INFILE OUTFILE
//
// AES-256-GCM, stored as base64 of iv (12 bytes) || ciphertext || tag (16
// bytes), the way Node apps usually concatenate createCipheriv's output.
// The key (base64 of 32 bytes) is read from KEYFILE, never argv.
const crypto = require('crypto');
const fs = require('fs');

const [mode, keyfile, infile, outfile] = process.argv.slice(2);
const key = Buffer.from(fs.readFileSync(keyfile, 'utf8').trim(), 'base64');
const lines = fs.readFileSync(infile, 'utf8').split('\n').filter((l, i, a) => i < a.length - 1);
const out = lines.map((l) => {
  if (mode === 'encrypt') {
    const iv = crypto.randomBytes(12);
    const c = crypto.createCipheriv('aes-256-gcm', key, iv);
    const ct = Buffer.concat([c.update(Buffer.from(l, 'base64')), c.final()]);
    return Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64');
  }
  const raw = Buffer.from(l, 'base64');
  const d = crypto.createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
  d.setAuthTag(raw.subarray(raw.length - 16));
  return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('base64');
});
fs.writeFileSync(outfile, out.map((x) => x + '\n').join(''));
