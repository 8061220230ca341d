#include "io/checkpoint.h"

#include <torch/torch.h>

#include <map>

#include "core/error.h"
#include "core/shape.h"

namespace ctfgen::io {

NamedTensors module_tensors(const torch::nn::Module& module, const std::string& prefix) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(prefix + b.key(), b.value());
  return out;
}

void save_component(const std::string& path, const std::string& kind,
                    const nlohmann::json& config, const NamedTensors& tensors,
                    const nlohmann::json& meta) {
  Metadata md{{"format", "ctfgen"},
              {"format_version", std::to_string(kFormatVersion)},
              {"kind", kind},
              {"config", config.dump()},
              {"meta", meta.dump()}};
  save_safetensors(path, tensors, md);
}

Component load_component(const std::string& path, const std::string& expected_kind) {
  Component c;
  c.path = path;
  c.file = load_safetensors(path);
  const auto& md = c.file.metadata;
  auto get = [&](const char* key) -> std::string {
    auto it = md.find(key);
    CTFGEN_CHECK(it != md.end(), path, ": not a ctfgen component file (metadata has no '", key,
                 "'); import foreign checkpoints with 'ctfgen import-llamagen'");
    return it->second;
  };
  CTFGEN_CHECK(get("format") == "ctfgen", path, ": metadata format is '", get("format"),
               "', expected 'ctfgen'");
  int version = 0;
  try {
    version = std::stoi(get("format_version"));
  } catch (const std::exception&) {
    throw Error(str_cat(path, ": bad format_version '", get("format_version"), "'"));
  }
  CTFGEN_CHECK(version >= 1 && version <= kFormatVersion, path, ": format_version ", version,
               " is not supported by this build (supports 1..", kFormatVersion,
               "); hint: upgrade ctfgen");
  c.kind = get("kind");
  CTFGEN_CHECK(expected_kind.empty() || c.kind == expected_kind, path, ": is a '", c.kind,
               "' file, expected a '", expected_kind, "' file");
  try {
    c.config = nlohmann::json::parse(get("config"));
    c.meta = md.count("meta") ? nlohmann::json::parse(md.at("meta")) : nlohmann::json::object();
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(path, ": metadata config/meta is not valid JSON (", e.what(), ")"));
  }
  return c;
}

void load_module_strict(torch::nn::Module& module, const SafetensorsFile& file,
                        const std::string& prefix, const std::set<std::string>& ignore) {
  std::map<std::string, at::Tensor> targets;
  for (auto& p : module.named_parameters(true)) targets[p.key()] = p.value();
  for (auto& b : module.named_buffers(true)) targets[b.key()] = b.value();
  std::vector<std::string> missing, unexpected, misshaped;
  std::map<std::string, const at::Tensor*> found;
  std::set<std::string> seen;
  for (const auto& [name, t] : file.tensors) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string key = name.substr(prefix.size());
    if (ignore.count(key)) continue;
    auto it = targets.find(key);
    if (it == targets.end()) {
      unexpected.push_back(name);
      continue;
    }
    seen.insert(key);
    if (!it->second.sizes().equals(t.sizes())) {
      misshaped.push_back(str_cat(name, " (expected ", shape_str(it->second.sizes()), ", got ",
                                  shape_str(t.sizes()), ")"));
      continue;
    }
    found[key] = &t;
  }
  for (const auto& [key, t] : targets)
    if (!seen.count(key) && !ignore.count(key)) missing.push_back(prefix + key);
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty()) {
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 20; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > 20) s += str_cat(", ... (", v.size() - 20, " more)");
      return s;
    };
    std::string msg = str_cat(file.source, ": tensors do not match the model");
    if (!missing.empty()) msg += str_cat("; missing ", missing.size(), ": ", join(missing));
    if (!unexpected.empty()) msg += str_cat("; unexpected ", unexpected.size(), ": ", join(unexpected));
    if (!misshaped.empty()) msg += str_cat("; wrong shape ", misshaped.size(), ": ", join(misshaped));
    throw Error(msg);
  }
  torch::NoGradGuard no_grad;
  for (auto& [key, t] : found)
    CTFGEN_CHECK(!t->is_floating_point() || torch::isfinite(*t).all().item<bool>(), file.source,
                 ": tensor ", prefix + key, " holds NaN or infinite values");
  for (auto& [key, t] : found) {
    auto& dst = targets[key];
    dst.copy_(t->to(dst.device(), dst.scalar_type()));
  }
}

}  // namespace ctfgen::io
