#include "sampling/sampling_config.h"

#include <cmath>

#include "core/error.h"
#include "core/json_config.h"

namespace ctfgen::sampling {

bool SamplingConfig::guidance_at(int64_t t) const {
  if (!guidance()) return false;
  return cfg_interval < 0 || t <= cfg_interval + 1;
}

nlohmann::json SamplingConfig::to_json() const { return fields_to_json(*this); }

SamplingConfig SamplingConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<SamplingConfig>(j, "SamplingConfig");
}

void SamplingConfig::validate() const {
  CTFGEN_CHECK_USAGE(std::isfinite(cfg_scale) && cfg_scale >= 0,
                     "SamplingConfig: cfg_scale must be finite and >= 0 (<= 1 = off), got ",
                     cfg_scale);
  CTFGEN_CHECK_USAGE(cfg_interval >= -1, "SamplingConfig: cfg_interval must be >= -1, got ",
                     cfg_interval);
  CTFGEN_CHECK_USAGE(std::isfinite(temperature) && temperature >= 0,
                     "SamplingConfig: temperature must be finite and >= 0, got ", temperature);
  CTFGEN_CHECK_USAGE(top_k >= 0, "SamplingConfig: top_k must be >= 0 (0 = off), got ", top_k);
  CTFGEN_CHECK_USAGE(top_p > 0 && top_p <= 1, "SamplingConfig: top_p must be in (0, 1] (1 = off), got ",
                     top_p);
}

SamplingConfig SamplingConfig::ctf_stage1() {
  SamplingConfig c;
  c.cfg_scale = 2.0;
  c.temperature = 1.1;
  return c;
}

SamplingConfig SamplingConfig::ctf_stage2() {
  SamplingConfig c;
  c.temperature = 1.1;
  return c;
}

SamplingConfig SamplingConfig::llamagen_fid(double cfg_scale) {
  SamplingConfig c;
  c.cfg_scale = cfg_scale;
  return c;
}

}  // namespace ctfgen::sampling
