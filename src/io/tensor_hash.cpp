#include "io/tensor_hash.h"

#include <openssl/evp.h>
#include <torch/torch.h>

#include <algorithm>
#include <memory>

#include "core/error.h"

namespace ctfgen::io {

std::string hash_tensors(const NamedTensors& tensors, const std::set<std::string>& exclude) {
  std::vector<const std::pair<std::string, at::Tensor>*> order;
  for (const auto& p : tensors)
    if (!exclude.count(p.first)) order.push_back(&p);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  CTFGEN_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, "sha256 init failed");
  for (auto* p : order) {
    auto t = p->second.detach().to(torch::kCPU).contiguous();
    std::string head = p->first + "|" + dtype_to_safetensors(t.scalar_type()) + "|";
    for (auto s : t.sizes()) head += std::to_string(s) + ",";
    head += "|";
    EVP_DigestUpdate(ctx.get(), head.data(), head.size());
    EVP_DigestUpdate(ctx.get(), t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string tokenizer_hash(const NamedTensors& vq_tensors) {
  return hash_tensors(vq_tensors, {"quantize.codebook_used"});
}

}  // namespace ctfgen::io
