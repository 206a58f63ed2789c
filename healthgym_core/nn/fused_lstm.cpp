// The fused CPU LSTM recurrence: forward, backward (BPTT) and the backward's own backward, for the critic's
// gradient penalty. Built at first use by healthgym_core/nn/fused.py; the maths is in docs/fused_lstm.md.
//
// Every tensor is time-major and contiguous: gx [T, B, 4H] (the input projection plus both biases), w [4H, H]
// (weight_hh), h, c, k = tanh(c) [T, B, H], gates [T, B, 4H] (activations i, f, g, o in nn.LSTM's order).
// `reverse` runs the recurrence from t = T-1 down to 0; outputs stay in time order (as nn.LSTM's reverse half).
// Per time step one matmul (the BLAS torch links, called directly) and one fused loop over the batch; the weight
// gradients are one matmul over all time steps.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

extern "C" {
// The Fortran BLAS torch's CPU build links (MKL or OpenBLAS export these); called directly, with no dispatch.
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*);
}

namespace {

using at::Tensor;

// Row-major C[m, n] = alpha op(A) op(B) + beta C, op(A) [m, k], op(B) [k, n]; lda, ldb, ldc are row strides.
inline void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc) {
  const char tra = ta ? 'T' : 'N', trb = tb ? 'T' : 'N';
  sgemm_(&trb, &tra, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}
inline void gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb,
                 double beta, double* c, int ldc) {
  const char tra = ta ? 'T' : 'N', trb = tb ? 'T' : 'N';
  dgemm_(&trb, &tra, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}
template <typename T>
using Vec = at::vec::Vectorized<T>;

// exp inline (no call, so nothing spills around it): Cephes' expf, about 1 ulp, on AVX-512 and AVX2; Sleef's
// elsewhere and for float64 (the gradient checks).
template <typename T>
inline Vec<T> exp_(const Vec<T>& x) {
  return x.exp();
}

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#if defined(CPU_CAPABILITY_AVX512)
using Reg = __m512;
#define HG(op) _mm512_##op
#else
using Reg = __m256;
#define HG(op) _mm256_##op
#endif
// As torch's exp: +inf past float's overflow (so a saturated sigmoid is exactly 0, and its derivatives too) and
// NaN for NaN (max/min return their second operand when either is NaN, so the input goes second).
template <>
inline Vec<float> exp_(const Vec<float>& v) {
  const Reg x0 = Reg(v);
  Reg x = HG(min_ps)(HG(set1_ps)(88.37626f), HG(max_ps)(HG(set1_ps)(-87.33654f), x0));
  Reg n = HG(mul_ps)(x, HG(set1_ps)(1.44269504088896341f));
#if defined(CPU_CAPABILITY_AVX512)
  n = _mm512_roundscale_ps(n, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
  n = _mm256_round_ps(n, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#endif
  Reg r = HG(fnmadd_ps)(n, HG(set1_ps)(0.693359375f), x);
  r = HG(fnmadd_ps)(n, HG(set1_ps)(-2.12194440e-4f), r);
  Reg p = HG(set1_ps)(1.9875691500e-4f);
  p = HG(fmadd_ps)(p, r, HG(set1_ps)(1.3981999507e-3f));
  p = HG(fmadd_ps)(p, r, HG(set1_ps)(8.3334519073e-3f));
  p = HG(fmadd_ps)(p, r, HG(set1_ps)(4.1665795894e-2f));
  p = HG(fmadd_ps)(p, r, HG(set1_ps)(1.6666665459e-1f));
  p = HG(fmadd_ps)(p, r, HG(set1_ps)(5.0000001201e-1f));
  p = HG(fmadd_ps)(p, HG(mul_ps)(r, r), HG(add_ps)(r, HG(set1_ps)(1.f)));
#if defined(CPU_CAPABILITY_AVX512)
  Reg y = _mm512_scalef_ps(p, n);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x0, HG(set1_ps)(88.72283935546875f), _CMP_GT_OQ), y,
                              HG(set1_ps)(INFINITY));
#else
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  Reg y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_blendv_ps(y, HG(set1_ps)(INFINITY), _mm256_cmp_ps(x0, HG(set1_ps)(88.72283935546875f), _CMP_GT_OQ));
#endif
}
#undef HG
#endif

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  return Vec<T>(T(1)) / (Vec<T>(T(1)) + exp_(x.neg()));
}

// tanh: at::vec's (Sleef, about 1 ulp). A one-exp quotient, (1 - e^{-2|x|}) / (1 + e^{-2|x|}), was tried and is
// faster, but its 2-3 ulp error near |tanh| = 1 is an absolute error of a few 1e-7 that 1 - tanh^2 (the cell's
// derivative) turns into relative errors of 1e-4 in saturated cells: generator gradients 2e-4 from float64 where
// nn.LSTM's were 1e-6 (bench/README.md).
template <typename T>
inline Vec<T> tanh_(const Vec<T>& x) {
  return x.tanh();
}

// Run fn(b, j, n) over every batch row b and every chunk [j, j + n) of the H columns, n <= Vec::size().
template <typename T, typename F>
inline void over_rows(int64_t B, int64_t H, const F& fn) {
  const int64_t V = Vec<T>::size();
  at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t j = 0; j < H; j += V) fn(b, j, std::min(V, H - j));
  });
}

template <typename T>
inline Vec<T> ld(const T* p, int64_t n) {
  return n == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, n);
}

template <typename T>
inline void st(const Vec<T>& v, T* p, int64_t n) {
  if (n == Vec<T>::size()) v.store(p); else v.store(p, n);
}

void check_inputs(const Tensor& gx, const Tensor& w) {
  TORCH_CHECK(gx.dim() == 3 && gx.is_contiguous() && gx.device().is_cpu(), "gx must be a contiguous CPU [T, B, 4H] tensor");
  TORCH_CHECK(w.dim() == 2 && w.size(0) == gx.size(2) && w.size(0) == 4 * w.size(1), "w must be [4H, H]");
  TORCH_CHECK(w.scalar_type() == gx.scalar_type(), "gx and w must have one dtype");
}

// Shapes of one call: L steps, B rows, H hidden, G = 4H gates; `at` maps a processing step to its time index.
struct Dims {
  int64_t L, B, H, G;
  bool reverse;
  int64_t at(int64_t s) const { return reverse ? L - 1 - s : s; }
  int64_t gate_row(int64_t s) const { return at(s) * B * G; }  // offset of step s in a [T, B, 4H] tensor
  int64_t row(int64_t s) const { return at(s) * B * H; }        // offset of step s in a [T, B, H] tensor
};

// out[G, Q] (+)= sum over steps s >= 1 of a[t(s)]^T b[t(s-1)], for a [T, B, G] and b [T, B, Q]: one matmul over all
// steps, computed as (b^T a)^T (MKL runs that orientation of these tall, thin operands about 25% faster).
template <typename T>
void shifted_outer(const Dims& d, const T* a, int64_t ga, const T* b, int64_t gb, T beta, T* out) {
  std::vector<T> bt(ga * gb, T(0));  // [Q, G]
  if (d.L >= 2) {
    const T* a1 = a + (d.reverse ? 0 : d.B * ga);  // steps 1..L-1 in processing order, contiguous in time
    const T* b0 = b + (d.reverse ? d.B * gb : 0);
    gemm(true, false, gb, ga, (d.L - 1) * d.B, T(1), b0, gb, a1, ga, T(0), bt.data(), ga);
  }
  for (int64_t i = 0; i < ga; ++i)
    for (int64_t j = 0; j < gb; ++j) out[i * gb + j] = (beta == T(0) ? T(0) : beta * out[i * gb + j]) + bt[j * ga + i];
}

// ---- forward ------------------------------------------------------------------------------------------------

template <typename T>
void forward_impl(const Dims& d, const T* gx, const T* w, T* h, T* c, T* k, T* gates) {
  const int64_t B = d.B, H = d.H, G = d.G;
  std::vector<T> pre(B * G);
  for (int64_t s = 0; s < d.L; ++s) {
    const T* gxt = gx + d.gate_row(s);
    const T* hp = s ? h + d.row(s - 1) : nullptr;
    const T* cp = s ? c + d.row(s - 1) : nullptr;
    if (s) gemm(false, true, B, G, H, T(1), hp, H, w, H, T(0), pre.data(), G);  // h_{t-1} W^T
    T* gt = gates + d.gate_row(s);
    T* ct = c + d.row(s);
    T* kt = k + d.row(s);
    T* ht = h + d.row(s);
    over_rows<T>(B, H, [&](int64_t b, int64_t j, int64_t n) {
      const int64_t q = b * G + j, r = b * H + j;
      Vec<T> ai = ld(gxt + q, n), af = ld(gxt + q + H, n), ag = ld(gxt + q + 2 * H, n), ao = ld(gxt + q + 3 * H, n);
      if (s) {
        const T* pr = pre.data() + q;
        ai = ai + ld(pr, n); af = af + ld(pr + H, n); ag = ag + ld(pr + 2 * H, n); ao = ao + ld(pr + 3 * H, n);
      }
      Vec<T> i = sigmoid(ai), f = sigmoid(af), g = tanh_(ag), o = sigmoid(ao);
      Vec<T> cn = i * g;
      if (cp) cn = f * ld(cp + r, n) + cn;
      Vec<T> kn = tanh_(cn);
      T* gr = gt + q;
      st(i, gr, n); st(f, gr + H, n); st(g, gr + 2 * H, n); st(o, gr + 3 * H, n);
      st(cn, ct + r, n); st(kn, kt + r, n); st(o * kn, ht + r, n);
    });
  }
}

Dims dims_of(const Tensor& gates, const Tensor& w, bool reverse) {
  return Dims{gates.size(0), gates.size(1), w.size(1), w.size(0), reverse};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward(const Tensor& gx, const Tensor& w_in, bool reverse) {
  check_inputs(gx, w_in);
  const Tensor w = w_in.contiguous();
  const Dims d = dims_of(gx, w, reverse);
  Tensor h = at::empty({d.L, d.B, d.H}, gx.options()), c = at::empty_like(h), k = at::empty_like(h);
  Tensor gates = at::empty_like(gx);
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "lstm_forward", [&] {
    forward_impl<scalar_t>(d, gx.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                           c.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), gates.data_ptr<scalar_t>());
  });
  return {h, c, k, gates};
}

// ---- backward -----------------------------------------------------------------------------------------------
// dh_t = dH_t + W^T delta_{t+1};  dc_t = dh_t o (1 - k^2) + dc_{t+1} f_{t+1};
// delta_t = [dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), dh k o(1-o)];  dW = sum_t delta_t h_{t-1}^T.

template <typename T>
void backward_impl(const Dims& d, const T* dH, const T* c, const T* k, const T* gates, const T* w, T* delta, T* dc_all,
                   T* dh_all) {
  const int64_t B = d.B, H = d.H, G = d.G;
  std::vector<T> rec(B * H);    // W^T delta of the step processed before (later in processing order)
  std::vector<T> carry(B * H);  // dc f of that step
  const Vec<T> one(T(1)), zero(T(0));
  for (int64_t s = d.L - 1; s >= 0; --s) {
    const bool last = s == d.L - 1;
    const T* dHt = dH + d.row(s);
    const T* gt = gates + d.gate_row(s);
    const T* kt = k + d.row(s);
    const T* cp = s ? c + d.row(s - 1) : nullptr;
    T* dt = delta + d.gate_row(s);
    T* dct = dc_all ? dc_all + d.row(s) : nullptr;  // kept for the double backward only
    T* dht = dh_all ? dh_all + d.row(s) : nullptr;
    over_rows<T>(B, H, [&](int64_t b, int64_t j, int64_t n) {
      const int64_t r = b * H + j, q = b * G + j;
      Vec<T> dh = ld(dHt + r, n);
      if (!last) dh = dh + ld(rec.data() + r, n);
      Vec<T> i = ld(gt + q, n), f = ld(gt + q + H, n), g = ld(gt + q + 2 * H, n), o = ld(gt + q + 3 * H, n);
      Vec<T> kk = ld(kt + r, n);
      Vec<T> dc = dh * o * (one - kk * kk);
      if (!last) dc = dc + ld(carry.data() + r, n);
      st(dc * f, carry.data() + r, n);
      if (dht) st(dh, dht + r, n);
      if (dct) st(dc, dct + r, n);
      st(dc * g * i * (one - i), dt + q, n);
      st(cp ? dc * ld(cp + r, n) * f * (one - f) : zero, dt + q + H, n);
      st(dc * i * (one - g * g), dt + q + 2 * H, n);
      st(dh * kk * o * (one - o), dt + q + 3 * H, n);
    });
    if (s > 0) gemm(false, false, B, H, G, T(1), dt, G, w, H, T(0), rec.data(), H);  // delta_t W
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_backward(const Tensor& dH_in, const Tensor& h, const Tensor& c, const Tensor& k,
                                                         const Tensor& gates, const Tensor& w_in, bool reverse, bool keep) {
  const Tensor dH = dH_in.contiguous(), w = w_in.contiguous();
  const Dims d = dims_of(gates, w, reverse);
  Tensor delta = at::empty_like(gates);
  Tensor dc_all = keep ? at::empty_like(c) : at::empty({0}, c.options());
  Tensor dh_all = keep ? at::empty_like(c) : at::empty({0}, c.options());
  Tensor dw = at::empty_like(w);
  AT_DISPATCH_FLOATING_TYPES(dH.scalar_type(), "lstm_backward", [&] {
    using T = scalar_t;
    backward_impl<T>(d, dH.data_ptr<T>(), c.data_ptr<T>(), k.data_ptr<T>(), gates.data_ptr<T>(), w.data_ptr<T>(),
                     delta.data_ptr<T>(), keep ? dc_all.data_ptr<T>() : nullptr, keep ? dh_all.data_ptr<T>() : nullptr);
    shifted_outer<T>(d, delta.data_ptr<T>(), d.G, h.data_ptr<T>(), d.H, T(0), dw.data_ptr<T>());
  });
  return {delta, dw, dc_all, dh_all};
}

// ---- the backward's backward ----------------------------------------------------------------------------------
// Given cotangents gg of delta (the input gradient) and ggw of dW, returns the gradients of <gg, delta> + <ggw, dW>
// with respect to dH (the tangent of H along (gg, ggw): a forward sweep), to gx and to w (a backward sweep through
// the primal and tangent recurrences; the tangents' adjoints are the first backward's dh, dc and delta).

template <typename T>
void tangent_impl(const Dims& d, const T* base, const T* gates, const T* c, const T* k, const T* w, T* adot, T* cdot,
                  T* hdot) {
  const int64_t B = d.B, H = d.H, G = d.G;
  std::vector<T> pre(B * G);
  const Vec<T> one(T(1));
  for (int64_t s = 0; s < d.L; ++s) {
    if (s) gemm(false, true, B, G, H, T(1), hdot + d.row(s - 1), H, w, H, T(0), pre.data(), G);  // hdot_{t-1} W^T
    const T* bt = base + d.gate_row(s);
    const T* gt = gates + d.gate_row(s);
    const T* kt = k + d.row(s);
    const T* cp = s ? c + d.row(s - 1) : nullptr;
    const T* cdp = s ? cdot + d.row(s - 1) : nullptr;
    T* adt = adot + d.gate_row(s);
    T* cdt = cdot + d.row(s);
    T* hdt = hdot + d.row(s);
    over_rows<T>(B, H, [&](int64_t b, int64_t j, int64_t n) {
      const int64_t r = b * H + j, q = b * G + j;
      Vec<T> ai = ld(bt + q, n), af = ld(bt + q + H, n), ag = ld(bt + q + 2 * H, n), ao = ld(bt + q + 3 * H, n);
      if (s) {
        const T* pr = pre.data() + q;
        ai = ai + ld(pr, n); af = af + ld(pr + H, n); ag = ag + ld(pr + 2 * H, n); ao = ao + ld(pr + 3 * H, n);
      }
      st(ai, adt + q, n); st(af, adt + q + H, n); st(ag, adt + q + 2 * H, n); st(ao, adt + q + 3 * H, n);
      Vec<T> i = ld(gt + q, n), f = ld(gt + q + H, n), g = ld(gt + q + 2 * H, n), o = ld(gt + q + 3 * H, n);
      Vec<T> dcv = i * (one - i) * ai * g + i * (one - g * g) * ag;
      if (cp) dcv = dcv + f * (one - f) * af * ld(cp + r, n) + f * ld(cdp + r, n);
      Vec<T> kk = ld(kt + r, n);
      st(dcv, cdt + r, n);
      st(o * (one - o) * ao * kk + o * (one - kk * kk) * dcv, hdt + r, n);
    });
  }
}

template <typename T>
void adjoint_impl(const Dims& d, const T* gates, const T* c, const T* k, const T* w, const T* adot, const T* cdot,
                  const T* dh_all, const T* dc_all, const T* q_all, T* abar) {
  const int64_t B = d.B, H = d.H, G = d.G;
  std::vector<T> hbar(B * H), cbar(B * H);  // carried from the step processed before
  T* hb = hbar.data();
  T* cb = cbar.data();
  const Vec<T> one(T(1)), two(T(2)), zero(T(0));
  for (int64_t s = d.L - 1; s >= 0; --s) {
    const bool last = s == d.L - 1;
    const T* gt = gates + d.gate_row(s);
    const T* kt = k + d.row(s);
    const T* ad = adot + d.gate_row(s);
    const T* cdt = cdot + d.row(s);
    const T* cp = s ? c + d.row(s - 1) : nullptr;
    const T* cdp = s ? cdot + d.row(s - 1) : nullptr;
    const T* dht = dh_all + d.row(s);
    const T* dct = dc_all + d.row(s);
    const T* qn = (q_all && !last) ? q_all + d.row(s + 1) : nullptr;  // ggw^T delta of the step processed before
    T* ab = abar + d.gate_row(s);
    over_rows<T>(B, H, [&](int64_t b, int64_t j, int64_t n) {
      const int64_t r = b * H + j, q = b * G + j;
      Vec<T> i = ld(gt + q, n), f = ld(gt + q + H, n), g = ld(gt + q + 2 * H, n), o = ld(gt + q + 3 * H, n);
      Vec<T> ai = ld(ad + q, n), af = ld(ad + q + H, n), ag = ld(ad + q + 2 * H, n), ao = ld(ad + q + 3 * H, n);
      Vec<T> si = i * (one - i), sf = f * (one - f), sg = one - g * g, so = o * (one - o);
      Vec<T> kk = ld(kt + r, n), cd = ld(cdt + r, n), sk = one - kk * kk;
      Vec<T> ht = ld(dht + r, n), ctl = ld(dct + r, n);  // the tangents' adjoints
      Vec<T> hbv = last ? zero : ld(hb + r, n);
      if (qn) hbv = hbv + ld(qn + r, n);
      Vec<T> cbv = last ? zero : ld(cb + r, n);
      Vec<T> obar = hbv * kk + ht * kk * (one - two * o) * ao + ht * sk * cd;
      Vec<T> kbar = hbv * o - two * ht * o * kk * cd + ht * so * ao;
      Vec<T> cbt = kbar * sk + cbv;
      Vec<T> cprev = cp ? ld(cp + r, n) : zero;
      Vec<T> cdprev = cdp ? ld(cdp + r, n) : zero;
      Vec<T> fbar = cbt * cprev + ctl * cprev * (one - two * f) * af + ctl * cdprev;
      Vec<T> ibar = cbt * g + ctl * g * (one - two * i) * ai + ctl * sg * ag;
      Vec<T> gbar = cbt * i - two * ctl * i * g * ag + ctl * si * ai;
      st(ibar * si, ab + q, n);
      st(fbar * sf, ab + q + H, n);
      st(gbar * sg, ab + q + 2 * H, n);
      st(obar * so, ab + q + 3 * H, n);
      st(cbt * f + ctl * sf * af, cb + r, n);  // the carry into step s - 1
    });
    if (s > 0) gemm(false, false, B, H, G, T(1), ab, G, w, H, T(0), hb, H);  // abar_t W
  }
}

std::tuple<Tensor, Tensor, Tensor> lstm_double_backward(const Tensor& gg, const Tensor& ggw_in, const Tensor& h, const Tensor& c,
                                                        const Tensor& k, const Tensor& gates, const Tensor& w_in,
                                                        const Tensor& delta, const Tensor& dc_all, const Tensor& dh_all,
                                                        bool reverse) {
  const Tensor w = w_in.contiguous();
  const Dims d = dims_of(gates, w, reverse);
  const bool has_w = ggw_in.defined() && ggw_in.numel() > 0;
  const Tensor ggw = has_w ? ggw_in.contiguous() : ggw_in;
  // The tangent of the gate pre-activations before the recurrent term: gg_t + ggw h_{t-1} (a copy only if ggw adds).
  Tensor base = gg.defined() && gg.numel() > 0 ? gg.contiguous() : at::zeros_like(gates);
  if (has_w && base.data_ptr() == gg.data_ptr()) base = base.clone();
  Tensor q_all = has_w ? at::empty_like(h) : Tensor();
  Tensor adot = at::empty_like(gates), cdot = at::empty_like(c), hdot = at::empty_like(c), abar = at::empty_like(gates);
  Tensor wbar = at::empty_like(w);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_double_backward", [&] {
    using T = scalar_t;
    if (has_w && d.L > 1) {  // base[t(s)] += h[t(s-1)] ggw^T for s >= 1: one matmul
      T* b1 = base.data_ptr<T>() + (d.reverse ? 0 : d.B * d.G);
      const T* h0 = h.data_ptr<T>() + (d.reverse ? d.B * d.H : 0);
      gemm(false, true, (d.L - 1) * d.B, d.G, d.H, T(1), h0, d.H, ggw.data_ptr<T>(), d.H, T(1), b1, d.G);
    }
    if (has_w)  // ggw^T delta_t, for every step
      gemm(false, false, d.L * d.B, d.H, d.G, T(1), delta.data_ptr<T>(), d.G, ggw.data_ptr<T>(), d.H, T(0),
           q_all.data_ptr<T>(), d.H);
    tangent_impl<T>(d, base.data_ptr<T>(), gates.data_ptr<T>(), c.data_ptr<T>(), k.data_ptr<T>(), w.data_ptr<T>(),
                    adot.data_ptr<T>(), cdot.data_ptr<T>(), hdot.data_ptr<T>());
    adjoint_impl<T>(d, gates.data_ptr<T>(), c.data_ptr<T>(), k.data_ptr<T>(), w.data_ptr<T>(), adot.data_ptr<T>(),
                    cdot.data_ptr<T>(), dh_all.data_ptr<T>(), dc_all.data_ptr<T>(),
                    has_w ? q_all.data_ptr<T>() : nullptr, abar.data_ptr<T>());
    shifted_outer<T>(d, abar.data_ptr<T>(), d.G, h.data_ptr<T>(), d.H, T(0), wbar.data_ptr<T>());
    shifted_outer<T>(d, delta.data_ptr<T>(), d.G, hdot.data_ptr<T>(), d.H, T(1), wbar.data_ptr<T>());
  });
  return {hdot, abar, wbar};
}

}  // namespace

TORCH_LIBRARY(healthgym_fused_lstm, m) {
  m.def("forward(Tensor gx, Tensor w, bool reverse) -> (Tensor, Tensor, Tensor, Tensor)", &lstm_forward);
  m.def("backward(Tensor dH, Tensor h, Tensor c, Tensor k, Tensor gates, Tensor w, bool reverse, bool keep) -> "
        "(Tensor, Tensor, Tensor, Tensor)",
        &lstm_backward);
  m.def("double_backward(Tensor gg, Tensor ggw, Tensor h, Tensor c, Tensor k, Tensor gates, Tensor w, Tensor delta, "
        "Tensor dc, Tensor dh, bool reverse) -> (Tensor, Tensor, Tensor)",
        &lstm_double_backward);
}
