#include "sampling_flags.h"

namespace ctfgen::cli {

void add_sampling_flags(CLI::App& app, pipeline::GenerateConfig& c) {
  app.add_option("--cfg", c.stage1.cfg_scale, "Classifier-free guidance scale of the AR stage (<= 1 = off)")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  app.add_option("--cfg-interval", c.stage1.cfg_interval,
                 "Guide only tokens 0..c+1 (-1 = every token)")->check(CLI::Range(int64_t{-1}, int64_t{1} << 30))->capture_default_str();
  app.add_option("--temperature", c.stage1.temperature, "AR-stage temperature (floored at 1e-5)")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  app.add_option("--top-k", c.stage1.top_k, "AR-stage top-k (0 = off)")->check(CLI::Range(int64_t{0}, int64_t{1} << 30))->capture_default_str();
  app.add_option("--top-p", c.stage1.top_p, "AR-stage nucleus threshold (1 = off)")
      ->check(CLI::Range(1e-6, 1.0))->capture_default_str();
  app.add_option("--aux-cfg", c.stage2.cfg_scale, "Stage-2 guidance scale (<= 1 = off)")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  app.add_option("--aux-temperature", c.stage2.temperature, "Stage-2 temperature")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  app.add_option("--aux-top-k", c.stage2.top_k, "Stage-2 top-k (0 = all codes)")->check(CLI::Range(int64_t{0}, int64_t{1} << 30))->capture_default_str();
  app.add_option("--aux-top-p", c.stage2.top_p, "Stage-2 nucleus threshold (1 = off)")
      ->check(CLI::Range(1e-6, 1.0))->capture_default_str();
  app.add_flag("--aux-argmax", c.stage2.argmax, "Stage 2 takes the argmax instead of sampling");
  app.add_option("--fine-decoder", c.fine_decoder,
                 "CTF stage 2: aux (the learned model), or a stage-2-free reference: uniform "
                 "(random member of the cluster), frequent (most frequent member, needs "
                 "--code-counts), centroid (member nearest the cluster centroid)")
      ->check(CLI::IsMember(pipeline::fine_decoder_names()))
      ->capture_default_str();
  app.add_flag("--restrict", c.restrict_to_cluster,
               "Stage 2 only chooses among the members of the sampled coarse cluster");
  app.add_option("--batch", c.batch_size, "Images per AR batch (x2 rows with guidance)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))->capture_default_str();
}

void add_generator_file_flags(CLI::App& app, pipeline::GeneratorFiles& f) {
  app.add_option("--tokenizer", f.tokenizer, "VQ tokenizer file (kind vq)")->required();
  app.add_option("--model", f.model, "Stage-1 coarse model (CTF) or baseline model (kind gpt)")->required();
  app.add_option("--aux", f.aux, "Stage-2 auxiliary model (kind aux): CTF mode");
  app.add_option("--clusters", f.clusters, "Cluster file the CTF models were trained with (CTF mode)");
  app.add_option("--code-counts", f.code_counts,
                 "Token directory whose code frequencies define --fine-decoder frequent");
}

}  // namespace ctfgen::cli
