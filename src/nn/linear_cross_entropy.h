// The output head and its cross-entropy loss as one autograd operation that never holds the
// whole [N, V] logits matrix. The plain path (linear, cast to float32, cross_entropy) keeps the
// logits, their log-softmax and, in backward, their gradient: three [N, V] float32 tensors,
// 1 GiB each for a batch of 64 images of 256 tokens over a 16384-word codebook. Here rows go
// through in chunks, and since the loss's gradient with respect to a chunk's logits is known as
// soon as they are (softmax minus one-hot, over N), the forward turns each chunk straight into
// its share of the gradients of x and w and drops it. Backward only scales those by the
// upstream gradient. The same products as the plain path; held between forward and backward:
// d loss / d x [N, D] and d loss / d w [V, D] instead of the logits. docs/performance.md,
// "Training memory", has the measured saving.
//
//   auto loss = nn::linear_cross_entropy(norm(h).reshape({-1, D}), output->weight,
//                                        targets.reshape({-1}));   // == cross_entropy(logits)
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ctfgen::nn {

/// Default budget of a chunk: rows * V <= 2^24 logits (64 MiB as float32).
constexpr int64_t kLossChunkElements = int64_t{1} << 24;

/// Mean over rows of cross_entropy(x w^T, target), differentiable in x and w.
/// x: [N, D] floating, w: [V, D] floating (same device), target: [N] integer in [0, V)
/// -> scalar float32. Products run in the autocast dtype when autocast is on for x's device
/// and x and w are fp32/fp16/bf16 (as the plain head's linear would), otherwise in the
/// promoted dtype of x and w; logits,
/// log-sum-exp and the logits' gradient are float32. The gradient of w is summed over the
/// chunks in w's dtype. Gradients are formed in the forward only for inputs that require them
/// while grad mode is on (validation under no_grad pays the forward alone). chunk_elements
/// bounds rows * V per chunk (at least one row). First-order only: a backward with
/// create_graph throws.
/// Throws Error naming the tensor for bad shapes, dtypes or target values.
at::Tensor linear_cross_entropy(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target,
                                int64_t chunk_elements = kLossChunkElements);

}  // namespace ctfgen::nn
