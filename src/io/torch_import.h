// Import of LlamaGen's released PyTorch checkpoints (vq_ds16_c2i.pt, c2i_B_256.pt, ...) without
// executing anything from the file: the ZIP archive is read by io/zip_reader, data.pkl by the
// restricted unpickler in io/pickle_reader, tensors by name from data/<key>. Then the kind
// (VQ tokenizer or c2i GPT) and configuration are detected from the tensor names and shapes.
// See docs/llamagen_import.md.
//
// Never use torch::load / torch::pickle_load / torch::jit::load on files from elsewhere: they run
// libtorch's full unpickler (which has had memory-safety bugs, e.g. the heap overflow fixed in
// PyTorch PR #103667); this module is the audited path.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/pickle_reader.h"
#include "io/safetensors.h"

namespace ctfgen::io {

struct TorchReadOptions {
  // Top-level entries tried in order for the state dict (LlamaGen's sample scripts' order);
  // when none is present the whole top-level dict is the state dict.
  std::vector<std::string> entry_order{"model", "module", "state_dict"};
  pickle::Limits limits;  // unpickler limits
};

/// A state dict read from a PyTorch zip checkpoint.
struct TorchStateDict {
  std::string source;
  std::string archive_folder;                // the archive's top folder ("archive", "c2i_B_256", ...)
  std::string entry;                         // top-level entry that held it; "" = the whole file
  std::vector<std::string> top_level_keys;   // str keys of the top-level dict, in file order
  std::vector<std::string> opaque_objects;   // names of objects left opaque (argparse.Namespace, ...)
  std::vector<std::string> skipped;          // "name (what)" for state-dict values that are not tensors
  NamedTensors tensors;                      // file order; CPU, contiguous, dtype as stored
  // The top-level "args" entry when it is an argparse.Namespace (LlamaGen's training scripts
  // save {"model": ..., "args": Namespace, "steps": N}): a JSON object of its plain fields
  // (None, bool, int, float, str, and lists / tuples of those). null when there is no such entry.
  nlohmann::json args;
  std::vector<std::string> args_notes;  // fields of args left out, and why ("lr_sched (object ...)")
};

/// Reads the state dict of a torch.save zip file. Throws Error naming the file for a legacy
/// (non-zip) torch file, a TorchScript archive, a truncated or corrupt archive, a pickle the
/// restricted reader refuses, a storage whose data entry is missing or has another size than
/// its declared numel, or a tensor view outside its storage.
TorchStateDict read_torch_state_dict(const std::string& path, const TorchReadOptions& options = {});
/// The same for an archive held in memory (tests, fuzzing).
TorchStateDict read_torch_state_dict_from_memory(const uint8_t* data, size_t size,
                                                 const std::string& source,
                                                 const TorchReadOptions& options = {});

/// True when the file starts like a PyTorch checkpoint: a ZIP archive, or a legacy raw pickle
/// (which read_torch_state_dict then refuses with an explanation).
bool looks_like_torch_file(const std::string& path);

// ---------------------------------------------------------------------------------------------
// LlamaGen detection and import

// Explicit values win over the checkpoint's saved args, which win over the file name (GPT image
// size only), which wins over the defaults; see detect_llamagen.
struct LlamaGenImportOptions {
  std::string kind = "auto";     // "auto", "vq" or "gpt": what the file must hold
  int64_t image_size = 0;        // image side in pixels (GPT: gives block_size; VQ: recorded);
                                 // 0 = args.image_size, else (GPT) a _256 / _384 file name, else 256
  int64_t token_downsample = 0;  // GPT: pixels per token side; 0 = args.downsample_size, else 16
                                 // (LlamaGen's c2i GPTs use VQ-16)
  int64_t n_head = 0;            // GPT: heads; 0 = the preset's, or dim / 64 for other widths
  bool keep_dtype = false;        // keep fp16 / bf16 tensors instead of converting to fp32
  TorchReadOptions read;

  void validate() const;  // throws UsageError naming the field and value
};

struct LlamaGenDetection {
  std::string kind;                // "vq" or "gpt" (the component kind)
  std::string preset;              // "VQ-16", "VQ-8", "GPT-B", ..., or "custom"
  nlohmann::json config;           // the component's config JSON (VQConfig / GPTConfig fields)
  std::vector<std::string> notes;  // what was found and how, one line each
  // Where each inferred setting came from: {"image_size": "option" | "args" | "file name" |
  // "default", "token_downsample": ..., "n_head": "option" | "preset" | "default"} (GPT) or
  // {"image_size": ...} (VQ).
  nlohmann::json sources = nlohmann::json::object();
};

/// Detects a LlamaGen VQ tokenizer or c2i GPT from tensor names and shapes. `file_name` is used
/// to name the file in messages and to infer the GPT image size from a _256 / _384 suffix.
/// `args` is the checkpoint's saved training arguments (TorchStateDict::args; null or {} when
/// absent): image_size / downsample_size give the GPT block size (after explicit options, before
/// the file name), and the fields that restate the weights must agree with them (GPT:
/// gpt_model, vocab_size, codebook_size, num_classes, cls_token_num, gpt_type; VQ: vq_model,
/// codebook_size, codebook_embed_dim). Throws Error naming the tensor when required tensors are
/// missing, shapes disagree, unexpected tensors are present, or the file is of another kind
/// (e.g. a text-to-image GPT); Error naming both values and their sources when args disagree
/// with the weights or (image size) with the file name, unless an explicit option decides.
LlamaGenDetection detect_llamagen(const NamedTensors& tensors, const std::string& file_name,
                                  const LlamaGenImportOptions& options = {},
                                  const nlohmann::json& args = nullptr);

/// True for keys an importer drops: "freqs_cis" and KV-cache buffers (*.kv_cache.*).
bool is_ignored_llamagen_key(const std::string& name);

struct LlamaGenImport {
  LlamaGenDetection detection;
  NamedTensors tensors;              // ignored keys removed; fp32 unless keep_dtype
  std::vector<std::string> ignored;  // dropped keys
  nlohmann::json meta;               // component meta: source, entry, stored dtypes, notes,
                                     // sources (llamagen_sources), args (llamagen_args)
  TorchStateDict raw_info;           // where the state dict came from (tensors moved out)
};

/// Reads, filters, converts and detects. Throws Error (bad file, wrong kind) or UsageError
/// (bad options).
LlamaGenImport import_llamagen(const std::string& path, const LlamaGenImportOptions& options = {});

/// import_llamagen, then save_component(out_path, kind, config, tensors, meta).
LlamaGenImport import_llamagen_to_component(const std::string& path, const std::string& out_path,
                                            const LlamaGenImportOptions& options = {});

/// Loads a component file, or imports a LlamaGen .pt on the fly when `path` is a PyTorch
/// checkpoint, so that a released .pt works wherever a tokenizer or model file is expected.
/// expected_kind "" accepts any kind; otherwise a .pt of another kind is an Error.
Component load_component_or_torch(const std::string& path, const std::string& expected_kind = "",
                                  const LlamaGenImportOptions& options = {});

}  // namespace ctfgen::io
