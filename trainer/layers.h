/* layers.h - the dense kernels of the trainer: linear layers (BLIS sgemm),
 * activations, row softmax and target attention, forward and backward.
 *
 * Every kernel takes its outputs first and states its shapes (row-major).
 * Backward kernels ACCUMULATE into their gradient outputs (the caller zeroes
 * them once per minibatch, as llm.c does), so a tensor read by several
 * consumers sums their gradients without copies.  Each fast kernel has a
 * plain-loop `_ref` twin kept beside it; tests/unit/test_layers.c holds them
 * equal.  All kernels are single-threaded, allocation-free and deterministic
 * for given shapes and inputs. */
#ifndef MTLD_LAYERS_H
#define MTLD_LAYERS_H

/* out[B,OUT] = in[B,IN] @ w[IN,OUT] + b[OUT] (b may be NULL). */
void mtld_linear_forward(float *out, const float *in, const float *w, const float *b, int B, int IN,
                         int OUT);
void mtld_linear_forward_ref(float *out, const float *in, const float *w, const float *b, int B,
                             int IN, int OUT);

/* din[B,IN] += dout[B,OUT] @ w^T   (skipped when din is NULL)
 * dw[IN,OUT] += in^T @ dout
 * db[OUT]   += column sums of dout (skipped when db is NULL)
 * scratch: IN * OUT floats the kernel may overwrite (w transposed into it:
 * BLIS's no-transpose path runs twice as fast as its transposed one on these
 * shapes, nine times on a 4-wide gate); unused when din is NULL. */
void mtld_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, float *scratch, int B, int IN, int OUT);
void mtld_linear_backward_ref(float *din, float *dw, float *db, const float *dout, const float *in,
                              const float *w, int B, int IN, int OUT);

/* out[n] = max(in, 0); out may alias in. */
void mtld_relu_forward(float *out, const float *in, int n);
/* din[n] += dout * (out > 0), where out is the forward's output. */
void mtld_relu_backward(float *din, const float *dout, const float *out, int n);
/* d[n] = d * (out > 0) in place: the gradient through a ReLU whose output
 * gradient buffer is reused for its input. */
void mtld_relu_mask(float *d, const float *out, int n);

/* Numerically stable logistic function and log(sigmoid(x)). */
float mtld_sigmoidf(float x);
double mtld_log_sigmoid(double x);

/* out[B,N] = softmax over each row of in[B,N]; out may alias in. */
void mtld_softmax_forward(float *out, const float *in, int B, int N);
/* din[B,N] += out * (dout - <dout, out>) per row, out the forward's output. */
void mtld_softmax_backward(float *din, const float *dout, const float *out, int B, int N);

/* Target attention, one query per row over its own keys:
 *   s_j = <q[b], k[b,j]> / sqrt(D) for j < len[b];  a[b,:] = softmax(s) (0 past len)
 *   pooled[b] = sum_j a[b,j] k[b,j]           (all zeros when len[b] == 0)
 * Shapes: pooled[B,D], a[B,L], q[B,D], k[B,L,D], len[B] (0 <= len <= L). */
void mtld_attention_forward(float *pooled, float *a, const float *q, const float *k, const int *len,
                            int B, int L, int D);
/* dq[B,D] += d pooled / dq, dk[B,L,D] += d pooled / dk, given dpooled[B,D] and the
 * forward's a, q, k. */
void mtld_attention_backward(float *dq, float *dk, const float *dpooled, const float *a,
                             const float *q, const float *k, const int *len, int B, int L, int D);

#endif
