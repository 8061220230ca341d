// `ctfgen import-llamagen <file.pt> --out <file.safetensors>`: converts a released LlamaGen
// tokenizer or c2i GPT checkpoint into a ctfgen component file, without executing the pickle.
#include <cstdio>

#include "command.h"
#include "core/error.h"
#include "core/fs.h"
#include "io/torch_import.h"

namespace ctfgen::cmd_import_llamagen {

struct ImportOptions {
  std::string input;
  std::string out;
  bool json = false;
  ctfgen::io::LlamaGenImportOptions config;
};

ctfgen::cli::Action setup_import(CLI::App& app) {
  auto opt = std::make_shared<ImportOptions>();
  app.add_option("input", opt->input, "LlamaGen .pt file (vq_ds16_c2i.pt, c2i_B_256.pt, ...)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--out", opt->out, "Output component file (.safetensors)")->required();
  app.add_option("--kind", opt->config.kind, "What the file must hold: auto, vq or gpt")
      ->check(CLI::IsMember({"auto", "vq", "gpt"}))
      ->capture_default_str();
  app.add_option("--image-size", opt->config.image_size,
                 "Image side in pixels (GPT: gives the block size, 384 -> 24x24 tokens); "
                 "0 = the checkpoint's args.image_size, else (GPT) a _256/_384 file name, "
                 "else 256. Given, it also settles a file name / args disagreement")
      ->check(CLI::Range(0, 8192))
      ->capture_default_str();
  app.add_option("--token-downsample", opt->config.token_downsample,
                 "GPT: pixels per token side of the tokenizer it was trained with; "
                 "0 = the checkpoint's args.downsample_size, else 16")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--n-head", opt->config.n_head,
                 "GPT: attention heads; 0 = the preset's (dim / 64 when no preset matches)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_flag("--keep-dtype", opt->config.keep_dtype,
               "Keep fp16 / bf16 tensors as stored instead of converting to fp32");
  app.add_flag("--json", opt->json, "Print the detection as JSON");
  return [opt] {
    CTFGEN_CHECK_USAGE(!ctfgen::fs::same_file(opt->out, opt->input), "--out ", opt->out,
                       " is the input file itself; choose another path");
    auto imp = ctfgen::io::import_llamagen_to_component(opt->input, opt->out, opt->config);
    const auto& d = imp.detection;
    if (opt->json) {
      nlohmann::json j = {{"input", opt->input},
                          {"out", opt->out},
                          {"kind", d.kind},
                          {"preset", d.preset},
                          {"config", d.config},
                          {"sources", d.sources},
                          {"args", imp.raw_info.args},
                          {"notes", d.notes},
                          {"entry", imp.raw_info.entry},
                          {"tensors", imp.tensors.size()}};
      ctfgen::cli::print_json(j.dump(2));
      return;
    }
    std::printf("found     %s (%s)\n", d.preset.c_str(), d.kind == "vq" ? "VQ tokenizer" : "c2i GPT");
    for (const auto& n : d.notes) std::printf("          %s\n", n.c_str());
    std::printf("config    %s\n", d.config.dump().c_str());
    std::printf("wrote     %s (%zu tensors)\n", opt->out.c_str(), imp.tensors.size());
  };
}

CTFGEN_COMMAND("import-llamagen",
               "Convert a LlamaGen .pt (VQ tokenizer or c2i GPT) into a component file, "
               "without executing its pickle",
               setup_import);

}  // namespace ctfgen::cmd_import_llamagen
