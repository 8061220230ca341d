// `ctfgen sample`: class labels -> images, for CTF (--aux --clusters) and the baseline alike.
// Writes <out>/grid.png, <out>/images/NNNN_class<c>.png, optionally <out>/coarse_preview.png, and
// <out>/sample.json holding every setting and the SHA-256 of every input file.
#include <torch/torch.h>

#include <cstdio>

#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/rng.h"
#include "io/image_grid.h"
#include "io/image_io.h"
#include "io/npy.h"
#include "sampling_flags.h"

namespace ctfgen::cmd_sample {

struct Options {
  ctfgen::pipeline::GeneratorFiles files;
  ctfgen::pipeline::GenerateConfig config;
  std::vector<int64_t> classes;
  int64_t n = 4;
  uint64_t seed = 0;
  std::string out;
  bool no_individual = false;
  bool save_tokens = false;
  bool json = false;
};

ctfgen::cli::Action setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  ctfgen::cli::add_generator_file_flags(app, o->files);
  ctfgen::cli::add_sampling_flags(app, o->config);
  app.add_option("--class", o->classes, "Class labels to sample (default: every class)")->delimiter(',');
  app.add_option("--n", o->n, "Images per class")->check(CLI::Range(int64_t{1}, int64_t{100000}))->capture_default_str();
  app.add_option("--seed", o->seed, "Sampling seed")->capture_default_str();
  app.add_option("--out", o->out, "Output directory")->required();
  app.add_flag("--coarse-preview", o->config.coarse_preview,
               "CTF: also write the coarse map decoded through the cluster centroids");
  app.add_flag("--no-individual", o->no_individual, "Write only the grid, not one PNG per image");
  app.add_flag("--save-tokens", o->save_tokens,
               "Also write tokens_fine.npy (codebook indices [N, h, w] int64), tokens_coarse.npy "
               "(CTF coarse labels [N, h, w] int64) and labels.npy ([N] int64)");
  app.add_flag("--json", o->json, "Print the summary as JSON");
  return [o] {
    using namespace ctfgen;
    auto g = pipeline::load_generator(o->files);
    std::vector<int64_t> classes = o->classes;
    if (classes.empty())
      for (int64_t c = 0; c < g.num_classes(); ++c) classes.push_back(c);
    for (auto c : classes)
      CTFGEN_CHECK_USAGE(c >= 0 && c < g.num_classes(), "--class ", c, " is out of range [0, ",
                         g.num_classes(), ")");
    std::vector<int64_t> labels;
    for (auto c : classes)
      for (int64_t i = 0; i < o->n; ++i) labels.push_back(c);
    auto y = torch::tensor(labels, torch::kLong);
    auto rng = make_generator(o->seed);
    auto r = pipeline::generate(g, y, o->config, rng);
    fs::ensure_dir(o->out);
    io::GridOptions grid;
    grid.nrow = o->n;
    for (auto c : classes) grid.row_labels.push_back(std::to_string(c));
    io::write_png(o->out + "/grid.png", io::make_grid(r.images, grid));
    if (r.preview.defined()) io::write_png(o->out + "/coarse_preview.png", io::make_grid(r.preview, grid));
    if (!o->no_individual) {
      fs::ensure_dir(o->out + "/images");
      auto u8 = io::to_uint8(r.images);
      for (int64_t i = 0; i < y.size(0); ++i) {
        char name[64];
        std::snprintf(name, sizeof name, "/images/%04lld_class%lld.png", static_cast<long long>(i),
                      static_cast<long long>(labels[i]));
        io::write_png(o->out + name, io::chw_to_hwc(u8[i]));
      }
    }
    nlohmann::json token_files;
    if (o->save_tokens) {
      io::save_npy(o->out + "/tokens_fine.npy", r.fine.to(torch::kCPU, torch::kLong).contiguous());
      token_files["fine"] = "tokens_fine.npy";
      if (r.coarse.defined()) {
        io::save_npy(o->out + "/tokens_coarse.npy", r.coarse.to(torch::kCPU, torch::kLong).contiguous());
        token_files["coarse"] = "tokens_coarse.npy";
      }
      io::save_npy(o->out + "/labels.npy", y);
      token_files["labels"] = "labels.npy";
    }
    double n = static_cast<double>(y.size(0));
    nlohmann::json side = {{"mode", g.mode},
                           {"files", g.files},
                           {"tokenizer_hash", g.tokenizer_hash},
                           {"seed", o->seed},
                           {"classes", classes},
                           {"images_per_class", o->n},
                           {"sampling", o->config.to_json()},
                           {"threads", at::get_num_threads()},
                           {"seconds", {{"stage1", r.seconds_stage1},
                                        {"stage2", r.seconds_stage2},
                                        {"decode", r.seconds_decode}}},
                           {"images_per_s", n / r.seconds_total()},
                           {"ctfgen_version", CTFGEN_VERSION}};
    if (!token_files.is_null()) side["token_files"] = token_files;
    fs::atomic_write_text(o->out + "/sample.json", side.dump(2) + "\n");
    if (o->json) {
      cli::print_json(side.dump(2));
    } else {
      std::printf("%s\n", (o->out + "/grid.png").c_str());
      log::info(g.mode, ": ", y.size(0), " images in ", r.seconds_total(), " s (", n / r.seconds_total(),
                " images/s; stage 1 ", r.seconds_stage1, " s, stage 2 ", r.seconds_stage2,
                " s, decode ", r.seconds_decode, " s)");
    }
  };
}

CTFGEN_COMMAND("sample", "Generate images for class labels (CTF two-stage or baseline) as PNGs with a JSON sidecar",
               setup);

}  // namespace ctfgen::cmd_sample
