#include "pipeline/logits.h"

#include <torch/torch.h>

#include "core/device.h"
#include "core/error.h"
#include "core/shape.h"
#include "io/torch_import.h"
#include "pipeline/generate.h"

namespace ctfgen::pipeline {
namespace {

// Checks integer dtype and range [0, limit) of t; names it in the message.
void check_ints(const at::Tensor& t, int64_t limit, const std::string& name, const std::string& what) {
  CTFGEN_CHECK_USAGE(!t.is_floating_point() && !t.is_complex() && t.scalar_type() != torch::kBool, name,
                     ": ", what, " must be integers, got dtype ", c10::toString(t.scalar_type()));
  if (t.numel() == 0) return;
  const auto r = int_range(t);
  CTFGEN_CHECK_USAGE(r.lo >= 0 && r.hi < limit, name, ": ", what, " must be in [0, ", limit, "), got range [",
                     r.lo, ", ", r.hi, "]");
}

}  // namespace

LogitsResult teacher_forced_logits(const std::string& model_path, const at::Tensor& tokens_in,
                                   const at::Tensor& labels_in, int64_t batch, const std::string& tokens_name,
                                   const std::string& labels_name) {
  CTFGEN_CHECK_USAGE(batch >= 1, "logits: batch must be >= 1, got ", batch);
  auto comp = io::load_component_or_torch(model_path);
  CTFGEN_CHECK(comp.kind == "gpt" || comp.kind == "aux", model_path, ": is a '", comp.kind,
               "' file; logits needs a GPT (kind gpt) or stage-2 (kind aux) model");
  CTFGEN_CHECK_USAGE(tokens_in.dim() == 2 || tokens_in.dim() == 3, tokens_name,
                     ": tokens must be [B, T] or [B, h, w], got ", shape_str(tokens_in.sizes()));
  at::Tensor tokens = tokens_in.reshape({tokens_in.size(0), -1});
  const int64_t B = tokens.size(0), T = tokens.size(1);
  CTFGEN_CHECK_USAGE(labels_in.dim() == 1 && labels_in.size(0) == B, labels_name,
                     ": labels must be [B] with B = ", B, " (the tokens' batch), got ",
                     shape_str(labels_in.sizes()));
  LogitsResult out;
  out.kind = comp.kind;
  out.config = comp.config;
  models::GPT gpt{nullptr};
  models::Aux aux{nullptr};
  int64_t in_vocab = 0, classes = 0, block = 0;
  if (comp.kind == "gpt") {
    gpt = load_gpt_component(comp);
    in_vocab = gpt->config().vocab_size;
    classes = gpt->config().num_classes;
    block = gpt->config().block_size;
    CTFGEN_CHECK_USAGE(T >= 1 && T <= block, tokens_name, ": ", T, " tokens per sequence; ", model_path,
                       " takes 1 to ", block);
  } else {
    aux = load_aux_component(comp);
    in_vocab = aux->config().coarse_vocab;
    classes = aux->config().num_classes;
    block = aux->config().block_size;
    CTFGEN_CHECK_USAGE(T == block, tokens_name, ": ", T, " tokens per sequence; the stage-2 model ",
                       model_path, " reads whole images of ", block);
  }
  check_ints(tokens, in_vocab, tokens_name, comp.kind == "gpt" ? "tokens" : "coarse labels");
  check_ints(labels_in, classes + 1, labels_name, "class labels (num_classes = the null class)");
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (int64_t b = 0; b < B; b += batch) {
    const int64_t n = std::min(batch, B - b);
    auto x = tokens.narrow(0, b, n).to(torch::kLong).to(default_device());
    auto y = labels_in.narrow(0, b, n).to(torch::kLong).to(default_device());
    auto l = comp.kind == "gpt" ? gpt->forward_train(x, y) : aux->forward(x, y);
    parts.push_back(l.to(torch::kCPU, torch::kFloat));
  }
  out.logits = B > 0 ? torch::cat(parts) : torch::empty({0, T, 0});
  return out;
}

}  // namespace ctfgen::pipeline
