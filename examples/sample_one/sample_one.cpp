// Samples one image with the ctfgen library and writes it as a PNG (docs/library.md):
//   sample_one --tokenizer vq.safetensors --model model.safetensors [--aux aux.safetensors]
//              [--clusters clusters.safetensors] [--class 0] [--seed 0] --out image.png
// --model is a CTF stage-1 model (with --clusters, and --aux for the learned stage 2) or a
// baseline. Any error is printed and exits with 1.
#include <ATen/ops/full.h>
#include <c10/util/Exception.h>
#include <ctfgen/core/error.h>
#include <ctfgen/core/rng.h>
#include <ctfgen/core/runtime.h>
#include <ctfgen/io/image_io.h>
#include <ctfgen/pipeline/generate.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

int main(int argc, char** argv) {
  using namespace ctfgen;
  runtime::prepare_process(argc, argv);
  try {
    std::map<std::string, std::string> opt = {{"--aux", ""}, {"--clusters", ""}, {"--class", "0"},
                                              {"--seed", "0"}, {"--tokenizer", ""}, {"--model", ""},
                                              {"--out", ""}};
    for (int i = 1; i < argc; i += 2) {
      CTFGEN_CHECK_USAGE(opt.count(argv[i]) && i + 1 < argc, "unknown flag or missing value: ", argv[i]);
      opt[argv[i]] = argv[i + 1];
    }
    for (const char* flag : {"--tokenizer", "--model", "--out"})
      CTFGEN_CHECK_USAGE(!opt[flag].empty(), flag, " is required");

    auto number = [&](const char* flag) {
      char* end = nullptr;
      long long v = std::strtoll(opt[flag].c_str(), &end, 10);
      CTFGEN_CHECK_USAGE(!opt[flag].empty() && *end == '\0' && v >= 0, flag, " must be a number >= 0");
      return static_cast<int64_t>(v);
    };
    const int64_t label = number("--class");
    const uint64_t seed = static_cast<uint64_t>(number("--seed"));

    pipeline::GeneratorFiles files;
    files.tokenizer = opt["--tokenizer"];
    files.model = opt["--model"];
    files.aux = opt["--aux"];
    files.clusters = opt["--clusters"];
    pipeline::Generator g = pipeline::load_generator(files);
    CTFGEN_CHECK_USAGE(label < g.num_classes(), "--class must be below ", g.num_classes());
    at::Generator rng = make_generator(seed);
    pipeline::GenerateResult r = pipeline::generate(g, at::full({1}, label, at::kLong),
                                                    pipeline::GenerateConfig{}, rng, /*show_progress=*/false);
    io::write_png(opt["--out"], io::chw_to_hwc(io::to_uint8(r.images[0])));
    std::printf("%s: %s, class %lld, %lldx%lld\n", opt["--out"].c_str(), g.mode.c_str(),
                static_cast<long long>(label), static_cast<long long>(r.images.size(2)),
                static_cast<long long>(r.images.size(3)));
    return 0;
  } catch (const ctfgen::Error& e) {  // bad file or value: the message names it
    std::fprintf(stderr, "sample_one: error: %s\n", e.what());
  } catch (const c10::Error& e) {  // from libtorch
    std::fprintf(stderr, "sample_one: error: %s\n", e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sample_one: error: %s\n", e.what());
  }
  return 1;
}
