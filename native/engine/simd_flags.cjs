// Prints the vector-unit flags for native/engine's compiler (binding.gyp runs it): -mavx2 -mfma on an x86-64 Linux
// CPU that has both (exp, sigmoid and softmax run ~4× faster than with the SSE2 baseline), nothing elsewhere. The
// addon is built on the machine that runs it (npm install), so the flags describe that machine; RLHF_ENGINE_SIMD=0
// builds the portable baseline.
const fs = require('fs');
let flags = '';
if (process.env.RLHF_ENGINE_SIMD !== '0' && process.platform === 'linux' && process.arch === 'x64') {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) || '';
    const have = new Set((line.split(':')[1] || '').trim().split(/\s+/));
    if (have.has('avx2') && have.has('fma')) flags = '-mavx2 -mfma';
  } catch (e) {
    // no /proc: the baseline
  }
}
process.stdout.write(flags);
