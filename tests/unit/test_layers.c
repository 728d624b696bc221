/* test_layers.c - the trainer's dense kernels: each fast kernel equals its
 * reference twin, and every backward matches central finite differences of
 * a random projection of its forward (float, eps 1e-3). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "trainer/layers.h"

static uint64_t rng = 12345;
static float frand(void) { /* uniform in [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)(rng >> 40) * (2.0f / 16777216.0f) - 1.0f;
}
static void fill(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = frand();
}
static double dot(const float *a, const float *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}
static double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
  return m;
}
/* numerical vs analytic gradient agree: abs 2e-3 or relative 2e-2 */
static int grad_ok(double num, double ana) {
  return fabs(num - ana) <= 2e-3 + 2e-2 * fabs(ana);
}

#define EPS 1e-3f

/* ---- linear ---- */
static int B_, IN_, OUT_;
static float *lin_in, *lin_w, *lin_b, *lin_r, *lin_out;
static double linear_loss(void) {
  mtld_linear_forward(lin_out, lin_in, lin_w, lin_b, B_, IN_, OUT_);
  return dot(lin_out, lin_r, (size_t)B_ * OUT_);
}

static void test_linear(int B, int IN, int OUT) {
  B_ = B, IN_ = IN, OUT_ = OUT;
  size_t ni = (size_t)B * IN, nw = (size_t)IN * OUT, no = (size_t)B * OUT;
  lin_in = malloc(sizeof(float) * ni);
  lin_w = malloc(sizeof(float) * nw);
  lin_b = malloc(sizeof(float) * OUT);
  lin_r = malloc(sizeof(float) * no);
  lin_out = malloc(sizeof(float) * no);
  float *ref = malloc(sizeof(float) * no);
  fill(lin_in, ni);
  fill(lin_w, nw);
  fill(lin_b, OUT);
  fill(lin_r, no);
  mtld_linear_forward(lin_out, lin_in, lin_w, lin_b, B, IN, OUT);
  mtld_linear_forward_ref(ref, lin_in, lin_w, lin_b, B, IN, OUT);
  CHECK(max_abs_diff(lin_out, ref, no) < 1e-4);
  mtld_linear_forward(lin_out, lin_in, lin_w, NULL, B, IN, OUT);
  mtld_linear_forward_ref(ref, lin_in, lin_w, NULL, B, IN, OUT);
  CHECK(max_abs_diff(lin_out, ref, no) < 1e-4);

  /* backward: fast == ref, both accumulating onto non-zero buffers */
  float *din = malloc(sizeof(float) * ni), *din_r = malloc(sizeof(float) * ni);
  float *dw = malloc(sizeof(float) * nw), *dw_r = malloc(sizeof(float) * nw);
  float *db = malloc(sizeof(float) * OUT), *db_r = malloc(sizeof(float) * OUT);
  float *scratch = malloc(sizeof(float) * nw);
  fill(din, ni);
  fill(dw, nw);
  fill(db, OUT);
  memcpy(din_r, din, sizeof(float) * ni);
  memcpy(dw_r, dw, sizeof(float) * nw);
  memcpy(db_r, db, sizeof(float) * OUT);
  mtld_linear_backward(din, dw, db, lin_r, lin_in, lin_w, scratch, B, IN, OUT);
  mtld_linear_backward_ref(din_r, dw_r, db_r, lin_r, lin_in, lin_w, B, IN, OUT);
  CHECK(max_abs_diff(din, din_r, ni) < 1e-4);
  CHECK(max_abs_diff(dw, dw_r, nw) < 1e-4);
  CHECK(max_abs_diff(db, db_r, OUT) < 1e-4);

  /* finite differences from zeroed gradients */
  memset(din, 0, sizeof(float) * ni);
  memset(dw, 0, sizeof(float) * nw);
  memset(db, 0, sizeof(float) * OUT);
  mtld_linear_backward(din, dw, db, lin_r, lin_in, lin_w, scratch, B, IN, OUT);
  int bad = 0;
  struct {
    float *p, *g;
    size_t n;
  } ts[3] = {{lin_in, din, ni}, {lin_w, dw, nw}, {lin_b, db, (size_t)OUT}};
  for (int t = 0; t < 3; t++) {
    for (int k = 0; k < 5; k++) {
      size_t i = (size_t)(rng % ts[t].n);
      float save = ts[t].p[i];
      ts[t].p[i] = save + EPS;
      double lp = linear_loss();
      ts[t].p[i] = save - EPS;
      double lm = linear_loss();
      ts[t].p[i] = save;
      double num = (lp - lm) / (2.0 * EPS);
      if (!grad_ok(num, ts[t].g[i])) {
        bad++;
        fprintf(stderr, "linear fd: tensor %d [%zu] num %g ana %g\n", t, i, num, ts[t].g[i]);
      }
    }
  }
  CHECK(bad == 0);
  free(lin_in), free(lin_w), free(lin_b), free(lin_r), free(lin_out), free(ref);
  free(din), free(din_r), free(dw), free(dw_r), free(db), free(db_r), free(scratch);
}

/* ---- activations ---- */
static void test_relu_softmax(void) {
  enum { B = 5, N = 7 };
  float in[B * N], out[B * N], r[B * N], din[B * N];
  fill(in, B * N);
  fill(r, B * N);
  mtld_relu_forward(out, in, B * N);
  int ok = 1;
  for (int i = 0; i < B * N; i++) ok &= out[i] == (in[i] > 0 ? in[i] : 0.0f);
  CHECK(ok);
  memset(din, 0, sizeof(din));
  mtld_relu_backward(din, r, out, B * N);
  int bad = 0;
  for (int i = 0; i < B * N; i++) {
    if (fabsf(in[i]) < 2 * EPS) continue; /* the kink */
    float save = in[i];
    in[i] = save + EPS;
    mtld_relu_forward(out, in, B * N);
    double lp = dot(out, r, B * N);
    in[i] = save - EPS;
    mtld_relu_forward(out, in, B * N);
    double lm = dot(out, r, B * N);
    in[i] = save;
    bad += !grad_ok((lp - lm) / (2 * EPS), din[i]);
  }
  CHECK(bad == 0);

  /* softmax rows sum to one, and the backward */
  mtld_softmax_forward(out, in, B, N);
  double s0 = 0.0;
  for (int j = 0; j < N; j++) s0 += out[j];
  CHECK_NEAR(s0, 1.0, 1e-6);
  memset(din, 0, sizeof(din));
  mtld_softmax_backward(din, r, out, B, N);
  bad = 0;
  for (int i = 0; i < B * N; i++) {
    float save = in[i];
    in[i] = save + EPS;
    mtld_softmax_forward(out, in, B, N);
    double lp = dot(out, r, B * N);
    in[i] = save - EPS;
    mtld_softmax_forward(out, in, B, N);
    double lm = dot(out, r, B * N);
    in[i] = save;
    bad += !grad_ok((lp - lm) / (2 * EPS), din[i]);
  }
  CHECK(bad == 0);
  /* large logits stay finite */
  float big[3] = {1000.0f, -1000.0f, 999.0f}, sb[3];
  mtld_softmax_forward(sb, big, 1, 3);
  CHECK(isfinite(sb[0]) && isfinite(sb[2]) && sb[1] == 0.0f && sb[0] > sb[2]);
  CHECK(mtld_sigmoidf(-200.0f) >= 0.0f && mtld_sigmoidf(200.0f) == 1.0f);
  CHECK_NEAR(mtld_sigmoidf(0.0f), 0.5, 1e-7);
  CHECK(isfinite(mtld_log_sigmoid(-800.0)) && mtld_log_sigmoid(800.0) == 0.0);
  CHECK_NEAR(mtld_log_sigmoid(-800.0), -800.0, 1e-9);
}

/* ---- attention ---- */
enum { AB = 4, AL = 6, AD = 5 };
static float aq[AB * AD], ak[AB * AL * AD], apool[AB * AD], aa[AB * AL], ar[AB * AD];
static int alen[AB] = {6, 3, 0, 1};
static double att_loss(void) {
  mtld_attention_forward(apool, aa, aq, ak, alen, AB, AL, AD);
  return dot(apool, ar, AB * AD);
}

static void test_attention(void) {
  fill(aq, sizeof(aq) / sizeof(float));
  fill(ak, sizeof(ak) / sizeof(float));
  fill(ar, sizeof(ar) / sizeof(float));
  for (size_t i = 0; i < sizeof(aq) / sizeof(float); i++) aq[i] *= 2.0f;
  att_loss();
  /* weights: sum to one over the valid keys, zero past them; empty -> zero pool */
  double s = 0.0;
  for (int j = 0; j < 3; j++) s += aa[AL + j];
  CHECK_NEAR(s, 1.0, 1e-6);
  CHECK(aa[AL + 3] == 0.0f && aa[AL + 5] == 0.0f);
  int zero = 1;
  for (int d = 0; d < AD; d++) zero &= apool[2 * AD + d] == 0.0f;
  CHECK(zero);
  /* one key: pooled == that key */
  CHECK_NEAR(apool[3 * AD + 2], ak[3 * AL * AD + 2], 1e-6);

  float dq[AB * AD] = {0}, dk[AB * AL * AD] = {0};
  mtld_attention_backward(dq, dk, ar, aa, aq, ak, alen, AB, AL, AD);
  int bad = 0, n = 0;
  for (int i = 0; i < AB * AD; i++) {
    float save = aq[i];
    aq[i] = save + EPS;
    double lp = att_loss();
    aq[i] = save - EPS;
    double lm = att_loss();
    aq[i] = save;
    bad += !grad_ok((lp - lm) / (2 * EPS), dq[i]);
    n++;
  }
  for (int i = 0; i < AB * AL * AD; i++) {
    float save = ak[i];
    ak[i] = save + EPS;
    double lp = att_loss();
    ak[i] = save - EPS;
    double lm = att_loss();
    ak[i] = save;
    double num = (lp - lm) / (2 * EPS);
    if (!grad_ok(num, dk[i])) {
      bad++;
      fprintf(stderr, "attention fd: dk[%d] num %g ana %g\n", i, num, dk[i]);
    }
    n++;
  }
  CHECK(n == AB * AD + AB * AL * AD);
  CHECK(bad == 0);
  /* masked keys get no gradient */
  CHECK(dk[(1 * AL + 4) * AD] == 0.0f && dk[(2 * AL + 0) * AD] == 0.0f);
}

int main(void) {
  test_linear(1, 1, 1);
  test_linear(7, 13, 5);
  test_linear(64, 33, 17);
  test_linear(256, 160, 64);
  test_relu_softmax();
  test_attention();
  return CHECK_DONE();
}
