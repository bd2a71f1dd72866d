/* The LIF-box neuron of kdlib.students over a whole current sequence, forward and backward, for the CPU.
 *
 * Same arithmetic, operation by operation, as the eager PyTorch loop in kdlib/students.py
 * (_LIFSequence), so both give the same bits: the tests compare them. The eager loop makes a dozen
 * passes over memory per time step; here each neuron's T steps run in registers, one pass in all.
 *
 * Layout: every array is (T, n) float32, row-major; n is the neurons of one step (batch x features).
 * The current may be the same at every step (direct encoding): then current_stride is 0.
 * Built by kdlib/native.py with -ffp-contract=off, so no product and sum are fused unless written so, and with
 * -fno-trapping-math, which lets the compiler turn the spike comparison into vector selects (it changes no
 * value: only whether a comparison with NaN may raise a floating-point exception flag).
 */
#include <math.h>
#include <stdint.h>

#define BLOCK 256 /* neurons whose state stays in registers and L1 while the T steps run */

/* One clone per vector width, chosen at load time. The forward's fmaf needs the FMA instructions: AVX-512F has
 * them, AVX2 does not imply them (an "avx2" clone called the library's fmaf once per neuron and step, five times
 * slower than this one), so the 256-bit clone is "fma", which every AVX2 processor of these years also has. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__)
#define VECTOR_VARIANTS __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define VECTOR_VARIANTS
#endif

/* v' = keep*v + gain*I (fused as PyTorch's add with alpha is), z = H(v' - v_th), v = v' - v'*z. */
VECTOR_VARIANTS void lif_forward(const float *current, int64_t current_stride, float *potentials,
                                 float *spikes, int64_t steps, int64_t n, float keep, float gain, float v_th)
{
    for (int64_t start = 0; start < n; start += BLOCK) {
        const int64_t m = n - start < BLOCK ? n - start : BLOCK;
        float v[BLOCK];
        for (int64_t i = 0; i < m; i++)
            v[i] = 0.0f;
        for (int64_t t = 0; t < steps; t++) {
            const float *in = current + t * current_stride + start;
            float *pot = potentials + t * n + start, *z = spikes + t * n + start;
            for (int64_t i = 0; i < m; i++) {
                const float u = fmaf(in[i], gain, v[i] * keep);
                const float s = u > v_th ? 1.0f : 0.0f;
                pot[i] = u;
                z[i] = s;
                v[i] = u - u * s;
            }
        }
    }
}

/* Backpropagation through time with the SuperSpike surrogate dz/dv' = 1/(|v' - v_th| + 1)^2.
 * grad_v is dL/dv after the reset of step t; both the spike and the reset lead back to v'. */
VECTOR_VARIANTS void lif_backward(const float *grad_spikes, const float *potentials, float *grad_current,
                                  int64_t steps, int64_t n, float keep, float gain, float v_th)
{
    for (int64_t start = 0; start < n; start += BLOCK) {
        const int64_t m = n - start < BLOCK ? n - start : BLOCK;
        float grad_v[BLOCK];
        for (int64_t i = 0; i < m; i++)
            grad_v[i] = 0.0f;
        for (int64_t t = steps - 1; t >= 0; t--) {
            const float *pot = potentials + t * n + start, *gz = grad_spikes + t * n + start;
            float *out = grad_current + t * n + start;
            for (int64_t i = 0; i < m; i++) {
                const float a = fabsf(pot[i] - v_th) + 1.0f;
                const float surrogate = 1.0f / (a * a);
                const float z = pot[i] > v_th ? 1.0f : 0.0f;
                const float through_spike = (gz[i] - grad_v[i] * pot[i]) * surrogate;
                const float g = grad_v[i] * (1.0f - z) + through_spike; /* dL/dv' */
                grad_v[i] = g * keep;
                out[i] = g * gain;
            }
        }
    }
}
