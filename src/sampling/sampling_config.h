// Sampling settings of one stage (stage-1 AR loop, stage-2 parallel pass, or the LlamaGen
// baseline). Every knob has a documented "disabled" value (LlamaGen generate.py: sample):
//   cfg_scale <= 1   guidance off (no unconditional half is computed)
//   cfg_interval -1  guidance on every token
//   temperature 1    unchanged logits (0 is floored to 1e-5, i.e. near-greedy)
//   top_k 0          no top-k filter
//   top_p 1.0        no nucleus filter
//   argmax false     multinomial sampling
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>

namespace ctfgen::sampling {

constexpr double kMinTemperature = 1e-5;

struct SamplingConfig {
  double cfg_scale = 1.0;     // logits = uncond + (cond - uncond) * cfg_scale; <= 1 = off
  int64_t cfg_interval = -1;  // AR only: -1 = always; c >= 0: guidance for tokens 0 .. c + 1
                              // (prefill and decode steps i <= c, as LlamaGen), cond-only after
  double temperature = 1.0;   // logits / max(temperature, 1e-5), applied after guidance
  int64_t top_k = 0;          // keep logits >= the k-th largest (ties survive); 0 = off
  double top_p = 1.0;         // nucleus, Hugging Face style (keeps the first token over p); 1 = off
  bool argmax = false;        // take the argmax of the filtered logits instead of sampling

  bool guidance() const { return cfg_scale > 1.0; }
  /// Whether AR token t (0-based) uses guidance (false for every t when guidance() is false).
  bool guidance_at(int64_t t) const;

  nlohmann::json to_json() const;
  static SamplingConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("cfg_scale", self.cfg_scale);
    visit("cfg_interval", self.cfg_interval);
    visit("temperature", self.temperature);
    visit("top_k", self.top_k);
    visit("top_p", self.top_p);
    visit("argmax", self.argmax);
  }
  void validate() const;  // throws UsageError naming the field and value

  /// CTF stage 1 (CTF paper Tables 3c, 3e): cfg 2.0, temperature 1.1, top-k off, top-p off.
  static SamplingConfig ctf_stage1();
  /// CTF stage 2 (CTF paper Tables 3d, 3f): no guidance, temperature 1.1, top-k off, top-p off.
  static SamplingConfig ctf_stage2();
  /// LlamaGen FID protocol: the given cfg scale (B/L 2.0, XL 1.75), temperature 1, no filters.
  static SamplingConfig llamagen_fid(double cfg_scale);
};

}  // namespace ctfgen::sampling
