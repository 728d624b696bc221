/* layers.c - dense kernels of the trainer (see layers.h).  The linear layers
 * go through BLIS's cblas_sgemm (serial BLIS: single thread, same kernel path
 * for the same shapes, hence bit-reproducible); the rest are plain loops. */
#include "trainer/layers.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

void mtld_linear_forward(float *out, const float *in, const float *w, const float *b, int B, int IN,
                         int OUT) {
  if (b) {
    for (int i = 0; i < B; i++) memcpy(out + (size_t)i * OUT, b, sizeof(float) * (size_t)OUT);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, OUT, IN, 1.0f, in, IN, w, OUT,
              b ? 1.0f : 0.0f, out, OUT);
}

void mtld_linear_forward_ref(float *out, const float *in, const float *w, const float *b, int B,
                             int IN, int OUT) {
  for (int i = 0; i < B; i++) {
    for (int o = 0; o < OUT; o++) {
      float acc = b ? b[o] : 0.0f;
      for (int k = 0; k < IN; k++) acc += in[(size_t)i * IN + k] * w[(size_t)k * OUT + o];
      out[(size_t)i * OUT + o] = acc;
    }
  }
}

void mtld_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, float *scratch, int B, int IN, int OUT) {
  if (din) {
    for (int i0 = 0; i0 < IN; i0 += 8) /* in 8 x 8 tiles: both sides stay in cache lines */
      for (int o0 = 0; o0 < OUT; o0 += 8)
        for (int i = i0; i < i0 + 8 && i < IN; i++)
          for (int o = o0; o < o0 + 8 && o < OUT; o++)
            scratch[(size_t)o * IN + i] = w[(size_t)i * OUT + o];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, IN, OUT, 1.0f, dout, OUT, scratch, IN,
                1.0f, din, IN);
  }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IN, OUT, B, 1.0f, in, IN, dout, OUT, 1.0f,
              dw, OUT);
  if (db) {
    for (int i = 0; i < B; i++) {
      const float *d = dout + (size_t)i * OUT;
      for (int o = 0; o < OUT; o++) db[o] += d[o];
    }
  }
}

void mtld_linear_backward_ref(float *din, float *dw, float *db, const float *dout, const float *in,
                              const float *w, int B, int IN, int OUT) {
  for (int i = 0; i < B; i++) {
    const float *d = dout + (size_t)i * OUT;
    for (int k = 0; k < IN; k++) {
      float acc = 0.0f;
      for (int o = 0; o < OUT; o++) {
        if (din) acc += d[o] * w[(size_t)k * OUT + o];
        dw[(size_t)k * OUT + o] += in[(size_t)i * IN + k] * d[o];
      }
      if (din) din[(size_t)i * IN + k] += acc;
    }
    if (db)
      for (int o = 0; o < OUT; o++) db[o] += d[o];
  }
}

/* Branch-free select (x > 0 ? v : 0) by masking v's bits: the sign of an
 * activation is random, so a branch here mispredicts half the time. */
static inline float keep_if_pos(float x, float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof(u));
  u &= (uint32_t)0 - (uint32_t)(x > 0.0f);
  memcpy(&v, &u, sizeof(u));
  return v;
}

void mtld_relu_forward(float *out, const float *in, int n) {
  for (int i = 0; i < n; i++) out[i] = keep_if_pos(in[i], in[i]);
}

void mtld_relu_backward(float *din, const float *dout, const float *out, int n) {
  for (int i = 0; i < n; i++) din[i] += keep_if_pos(out[i], dout[i]);
}

void mtld_relu_mask(float *d, const float *out, int n) {
  for (int i = 0; i < n; i++) d[i] = keep_if_pos(out[i], d[i]);
}

float mtld_sigmoidf(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

double mtld_log_sigmoid(double x) {
  return x >= 0.0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

void mtld_softmax_forward(float *out, const float *in, int B, int N) {
  for (int i = 0; i < B; i++) {
    const float *x = in + (size_t)i * N;
    float *y = out + (size_t)i * N;
    float mx = x[0];
    for (int j = 1; j < N; j++) mx = x[j] > mx ? x[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < N; j++) {
      y[j] = expf(x[j] - mx);
      sum += y[j];
    }
    for (int j = 0; j < N; j++) y[j] /= sum;
  }
}

void mtld_softmax_backward(float *din, const float *dout, const float *out, int B, int N) {
  for (int i = 0; i < B; i++) {
    const float *y = out + (size_t)i * N, *dy = dout + (size_t)i * N;
    float dot = 0.0f;
    for (int j = 0; j < N; j++) dot += dy[j] * y[j];
    for (int j = 0; j < N; j++) din[(size_t)i * N + j] += y[j] * (dy[j] - dot);
  }
}

void mtld_attention_forward(float *pooled, float *a, const float *q, const float *k, const int *len,
                            int B, int L, int D) {
  float scale = 1.0f / sqrtf((float)D);
  for (int b = 0; b < B; b++) {
    const float *qb = q + (size_t)b * D, *kb = k + (size_t)b * L * D;
    float *ab = a + (size_t)b * L, *pb = pooled + (size_t)b * D;
    int n = len[b];
    memset(ab, 0, sizeof(float) * (size_t)L);
    memset(pb, 0, sizeof(float) * (size_t)D);
    if (n <= 0) continue;
    for (int j = 0; j < n; j++) {
      float s = 0.0f;
      for (int d = 0; d < D; d++) s += qb[d] * kb[(size_t)j * D + d];
      ab[j] = s * scale;
    }
    mtld_softmax_forward(ab, ab, 1, n);
    for (int j = 0; j < n; j++)
      for (int d = 0; d < D; d++) pb[d] += ab[j] * kb[(size_t)j * D + d];
  }
}

void mtld_attention_backward(float *dq, float *dk, const float *dpooled, const float *a,
                             const float *q, const float *k, const int *len, int B, int L, int D) {
  float scale = 1.0f / sqrtf((float)D);
  for (int b = 0; b < B; b++) {
    int n = len[b];
    if (n <= 0) continue;
    const float *qb = q + (size_t)b * D, *kb = k + (size_t)b * L * D;
    const float *ab = a + (size_t)b * L, *dp = dpooled + (size_t)b * D;
    float *dqb = dq + (size_t)b * D, *dkb = dk + (size_t)b * L * D;
    /* da_j = <dpooled, k_j>; ds_j = a_j (da_j - sum_i a_i da_i) */
    float dot = 0.0f;
    for (int j = 0; j < n; j++) {
      float da = 0.0f;
      for (int d = 0; d < D; d++) da += dp[d] * kb[(size_t)j * D + d];
      dot += ab[j] * da;
    }
    for (int j = 0; j < n; j++) {
      const float *kj = kb + (size_t)j * D;
      float *dkj = dkb + (size_t)j * D;
      float da = 0.0f;
      for (int d = 0; d < D; d++) da += dp[d] * kj[d];
      float ds = ab[j] * (da - dot) * scale;
      for (int d = 0; d < D; d++) {
        dkj[d] += ab[j] * dp[d] + ds * qb[d];
        dqb[d] += ds * kj[d];
      }
    }
  }
}
