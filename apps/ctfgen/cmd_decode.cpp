// `ctfgen decode`: token grids (a token directory or a codes .npy) -> PNG images (and, with
// --npy, the float images as .npy for NumPy / PyTorch).
#include <cstdio>
#include <memory>

#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/token_dir.h"
#include "io/image_grid.h"
#include "io/image_io.h"
#include "io/npy.h"
#include "vq/vq_model.h"

namespace ctfgen::cmd_decode {

struct DecodeOptions {
  std::string vq_path;
  std::string tokens;
  std::string out;
  int64_t limit = 0;
  bool grid = false;
  bool npy = false;
  int64_t nrow = 8;
  int64_t batch = 64;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ctfgen::cli::Action setup_decode(CLI::App& app) {
  auto o = std::make_shared<DecodeOptions>();
  app.add_option("--vq", o->vq_path, "VQ component file (kind vq)")->required();
  app.add_option("--tokens", o->tokens, "Token directory (from encode) or a codes .npy [N, h, w]")
      ->required();
  app.add_option("--out", o->out, "Output directory for PNGs")->required();
  app.add_option("--limit", o->limit, "Decode at most this many grids (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_flag("--grid", o->grid, "Write one grid.png instead of one PNG per image");
  app.add_flag("--npy", o->npy,
               "Also write images.npy: float32 [N, C, H, W] in the decoder's range [-1, 1] (clamped)");
  app.add_option("--nrow", o->nrow, "Images per grid row")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}))
      ->capture_default_str();
  app.add_option("--batch", o->batch, "Grids per decoder pass")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}))
      ->capture_default_str();
  return [o] {
    using namespace ctfgen;
    auto model = vq::load_vq(o->vq_path);
    at::Tensor codes;
    if (ends_with(o->tokens, ".npy")) {
      codes = io::load_npy(o->tokens);
      CTFGEN_CHECK(codes.dim() == 3, o->tokens, ": codes must be [N, h, w], got ",
                   codes.sizes());
      CTFGEN_CHECK(!codes.is_floating_point() && !codes.is_complex() &&
                       codes.scalar_type() != torch::kBool,
                   o->tokens, ": codes must be integers, got dtype ", codes.scalar_type());
      const int64_t V = model->config.codebook_size;
      if (codes.numel() > 0) {
        const int64_t lo = codes.min().item<int64_t>(), hi = codes.max().item<int64_t>();
        CTFGEN_CHECK(lo >= 0 && hi < V, o->tokens, ": code indices must be in [0, ", V,
                     ") for tokenizer ", o->vq_path, ", got range [", lo, ", ", hi, "]");
      }
    } else {
      auto set = data::load_token_dir(o->tokens);
      const auto hash = set.meta["tokenizer_hash"].get<std::string>();
      CTFGEN_CHECK(hash == vq::vq_tokenizer_hash(model), o->tokens,
                         ": tokens were made by tokenizer ", hash.substr(0, 12), "..., not by ",
                         o->vq_path);
      codes = set.codes;
    }
    if (o->limit > 0 && o->limit < codes.size(0)) codes = codes.slice(0, 0, o->limit);
    auto images = vq::decode_from_indices(model, codes.to(torch::kLong), o->batch);
    fs::ensure_dir(o->out);
    if (o->npy) io::save_npy(o->out + "/images.npy", images.to(torch::kCPU, torch::kFloat).contiguous());
    if (o->grid) {
      io::GridOptions g;
      g.nrow = o->nrow;
      const std::string path = o->out + "/grid.png";
      io::write_png(path, io::make_grid(images, g));
      std::printf("%s\n", path.c_str());
      return;
    }
    auto u8 = io::to_uint8(images);
    for (int64_t i = 0; i < u8.size(0); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/%06lld.png", static_cast<long long>(i));
      io::write_png(o->out + name, io::chw_to_hwc(u8[i]));
    }
    std::printf("%s: %lld images\n", o->out.c_str(), static_cast<long long>(u8.size(0)));
  };
}

CTFGEN_COMMAND("decode", "Decode token grids to PNG images with a VQ tokenizer", setup_decode);

}  // namespace ctfgen::cmd_decode
