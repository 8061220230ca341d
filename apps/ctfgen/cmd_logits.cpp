// `ctfgen logits`: teacher-forced logits of a GPT or stage-2 file on given tokens and classes,
// written as .npy for comparison with another implementation (src/pipeline/logits.h).
#include <torch/torch.h>

#include <cstdio>
#include <memory>

#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/token_dir.h"
#include "io/npy.h"
#include "pipeline/logits.h"

namespace ctfgen::cmd_logits {

struct LogitsOptions {
  std::string model;
  std::string tokens;
  std::string classes;
  int64_t class_label = -1;
  std::string out;
  int64_t limit = 0;
  int64_t batch = 64;
  bool json = false;
};

bool is_npy(const std::string& s) { return s.size() >= 4 && s.compare(s.size() - 4, 4, ".npy") == 0; }

ctfgen::cli::Action setup_logits(CLI::App& app) {
  auto o = std::make_shared<LogitsOptions>();
  app.add_option("--model", o->model,
                 "GPT (stage 1, baseline, or a LlamaGen c2i .pt) or stage-2 aux component file")
      ->required();
  app.add_option("--tokens", o->tokens,
                 "Input tokens: a .npy of integers [B, T] or [B, h, w] (GPT: its vocabulary; aux: "
                 "coarse labels), or a token directory from `ctfgen encode` (GPT only: its codes "
                 "and labels)")
      ->required();
  app.add_option("--classes", o->classes, "A .npy of [B] integer class labels (num_classes = the null class)");
  app.add_option("--class", o->class_label, "One class label for every sequence (instead of --classes)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--out", o->out, "Output .npy: float32 logits [B, T, V]")->required();
  app.add_option("--limit", o->limit, "Use at most this many sequences (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))->capture_default_str();
  app.add_option("--batch", o->batch, "Sequences per forward pass")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}))->capture_default_str();
  app.add_flag("--json", o->json, "Print a JSON summary");
  return [o] {
    using namespace ctfgen;
    CTFGEN_CHECK_USAGE(is_npy(o->out), "--out ", o->out, ": must end in .npy");
    at::Tensor tokens, labels;
    std::string labels_name = o->classes;
    if (is_npy(o->tokens)) {
      tokens = io::load_npy(o->tokens);
    } else {
      auto set = data::load_token_dir(o->tokens);
      tokens = set.codes;
      labels = set.labels;
      labels_name = o->tokens + "/labels";
    }
    const int sources = static_cast<int>(!o->classes.empty()) + static_cast<int>(o->class_label >= 0);
    CTFGEN_CHECK_USAGE(sources <= 1, "give either --classes or --class, not both");
    if (!o->classes.empty()) {
      labels = io::load_npy(o->classes);
      labels_name = o->classes;
    } else if (o->class_label >= 0) {
      CTFGEN_CHECK_USAGE(tokens.dim() >= 1, o->tokens, ": tokens have no batch dimension");
      labels = torch::full({tokens.size(0)}, o->class_label, torch::kLong);
      labels_name = "--class";
    }
    CTFGEN_CHECK_USAGE(labels.defined(), "class labels are needed: --classes FILE.npy or --class N "
                                         "(a token directory carries its own)");
    if (o->limit > 0 && tokens.dim() >= 1 && o->limit < tokens.size(0)) {
      tokens = tokens.narrow(0, 0, o->limit);
      if (labels.dim() == 1 && labels.size(0) > o->limit) labels = labels.narrow(0, 0, o->limit);
    }
    auto r = pipeline::teacher_forced_logits(o->model, tokens, labels, o->batch, o->tokens, labels_name);
    io::save_npy(o->out, r.logits);
    std::vector<int64_t> shape(r.logits.sizes().begin(), r.logits.sizes().end());
    if (o->json) {
      nlohmann::json j = {{"model", o->model}, {"kind", r.kind}, {"out", o->out}, {"shape", shape},
                          {"config", r.config}};
      cli::print_json(j.dump(2));
      return;
    }
    std::printf("%s: %s logits [%lld, %lld, %lld] float32\n", o->out.c_str(), r.kind.c_str(),
                static_cast<long long>(shape[0]), static_cast<long long>(shape[1]),
                static_cast<long long>(shape[2]));
  };
}

CTFGEN_COMMAND("logits",
               "Teacher-forced logits of a GPT or stage-2 file on given tokens and classes, as .npy",
               setup_logits);

}  // namespace ctfgen::cmd_logits
