// JSON round trip for config structs. Every XxxConfig has
//   nlohmann::json to_json() const;  static XxxConfig from_json(const nlohmann::json&);
//   void validate() const;           // throws UsageError naming the field and value
// and, where every field maps to a JSON value of the same name, lists its fields once:
//   template <typename Self, typename Visit>
//   static void fields(Self& self, Visit&& visit) { visit("steps", self.steps); ... }
// so that to_json and from_json are fields_to_json(*this) and fields_from_json<XxxConfig>(j, ...).
// A field that is itself a config (has to_json/from_json) is written and read as a nested object.
// JsonFields reads fields with defaults kept for absent keys (fields are only ever added) and
// rejects unknown keys and wrong types with an error that names the field.
#pragma once
#include <nlohmann/json.hpp>
#include <limits>
#include <set>
#include <string>
#include <type_traits>
#include <utility>

#include "core/error.h"

namespace ctfgen {

class JsonFields {
 public:
  JsonFields(const nlohmann::json& j, std::string what) : j_(j), what_(std::move(what)) {
    CTFGEN_CHECK_USAGE(j_.is_object(), what_, ": expected a JSON object, got ", j_.type_name());
  }
  template <typename T>
  void get(const char* key, T& out) {
    seen_.insert(key);
    auto it = j_.find(key);
    if (it == j_.end()) return;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) check_integer<T>(key, *it);
    try {
      out = it->template get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw UsageError(str_cat(what_, ": field '", key, "' has the wrong type (", it->type_name(),
                               ")"));
    }
  }
  /// Throws if the object holds a key that no get() asked for.
  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      CTFGEN_CHECK_USAGE(seen_.count(it.key()), what_, ": unknown field '", it.key(), "'");
  }

 private:
  // Integral fields need an integer JSON value inside T's range: nlohmann would otherwise convert
  // 2.5 or 1e300 (undefined behaviour) or wrap -1 into an unsigned field.
  template <typename T>
  void check_integer(const char* key, const nlohmann::json& v) const {
    bool ok = false;
    if (v.is_number_unsigned())
      ok = v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    else if (v.is_number_integer())
      ok = std::is_signed_v<T> && v.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
           v.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max());
    CTFGEN_CHECK_USAGE(ok || !v.is_number(), what_, ": field '", key, "' must be an integer in [",
                       +std::numeric_limits<T>::min(), ", ", +std::numeric_limits<T>::max(), "], got ", v.dump());
  }

  const nlohmann::json& j_;
  std::string what_;
  std::set<std::string> seen_;
};

namespace json_config_detail {
template <typename T, typename = void>
struct is_config : std::false_type {};
template <typename T>
struct is_config<T, std::void_t<decltype(std::declval<const T&>().to_json()),
                                decltype(T::from_json(std::declval<const nlohmann::json&>()))>>
    : std::true_type {};
}  // namespace json_config_detail

/// The JSON object of the fields Config::fields lists; nested configs as objects.
template <typename Config>
nlohmann::json fields_to_json(const Config& config) {
  nlohmann::json j = nlohmann::json::object();
  Config::fields(config, [&j](const char* key, const auto& value) {
    using V = std::decay_t<decltype(value)>;
    if constexpr (json_config_detail::is_config<V>::value)
      j[key] = value.to_json();
    else
      j[key] = value;
  });
  return j;
}

/// A Config from `j`: defaults for absent keys, a nested config's absent keys keep their
/// defaults too (Config's defaults for that field, merged key by key); unknown keys and wrong
/// types throw UsageError naming `what` and the field.
/// Does not call validate() (the caller decides).
template <typename Config>
Config fields_from_json(const nlohmann::json& j, const std::string& what) {
  Config config;
  JsonFields f(j, what);
  Config::fields(config, [&f, &j](const char* key, auto& value) {
    using V = std::decay_t<decltype(value)>;
    if constexpr (json_config_detail::is_config<V>::value) {
      // A nested object patches the field's current value (its defaults in Config, which may
      // differ from V's own: a partial "stage1" keeps ctf_stage1()'s other settings); anything
      // else replaces it and V::from_json judges it.
      nlohmann::json nested = value.to_json();
      if (j.contains(key)) {
        nlohmann::json patch;
        f.get(key, patch);
        if (patch.is_object() && nested.is_object())
          nested.update(patch);
        else
          nested = patch;
      }
      value = V::from_json(nested);
    } else {
      f.get(key, value);
    }
  });
  f.finish();
  return config;
}

}  // namespace ctfgen
