// Held-out evaluation of a tokenizer: how well its tokens reconstruct unseen images, how much of
// its codebook they use, and how stable they are under small photometric changes.
//
// The last measure is PeCo's perceptual check made concrete: a tokenizer whose codes are
// perceptual should give two mildly recoloured copies of an image (the same picture to a person)
// the same token at the same position. Each held-out image is centre-cropped and resized to the
// tokenizer's input (the geometry stays fixed, so positions correspond), then jittered twice,
// independently, in brightness and contrast (torchvision ColorJitter semantics) from generators
// seeded by (eval.seed, image index, view). The jitter therefore depends only on the config and
// the image, not on the run or the model: every tokenizer evaluated with the same `eval:` section
// sees exactly the same views.
//
// Metrics (the tokenizer job's `eval` event, docs/TRAINER.md):
//   eval_l1, eval_mse   mean |x - D(T(x))| and (x - D(T(x)))^2 over pixels, inputs in [-1, 1],
//                       where T gives token ids (the noiseless argmax for gumbel) and D decodes
//                       them: the reconstruction a MIM target stands for
//   eval_psnr           10 log10(1 / mse) on the [0, 1] scale
//   eval_codes_used, eval_perplexity   of the token histogram over the un-jittered images
//   eval_token_agreement   fraction of positions whose two jittered views get the same token
//   eval_plain_positions   fraction of token positions whose input cell (the pixels the token
//                       stands for, image_size / tokens per side square) is plain: its values
//                       span at most eval.plain_range on every channel (Fashion-MNIST's black
//                       background, a flat sky)
//   eval_plain_codes, eval_plain_code_share   codes most of whose assignments fall on plain
//                       cells, and their share of the codes used: codebook spent on the plain
//                       background rather than on content
//
// Value types and a free function; thread-compatible.
#ifndef PECO_TRAINER_TASKS_TOKENIZER_EVAL_H_
#define PECO_TRAINER_TASKS_TOKENIZER_EVAL_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/config_reader.h"
#include "torch/torch.h"
#include "trainer/data/dataset.h"
#include "trainer/models/vq_tokenizer.h"

namespace peco::trainer {

struct TokenizerEvalConfig {
  bool enabled = true;
  // fashion_mnist: the held-out split (train | test); image_folder: `path`, the held-out folder;
  // synthetic: a second synthetic set drawn with another seed.
  std::string split = "test";
  std::string path;
  int64_t every = 0;          // evaluate every this many steps too; 0 = only at the end
  int64_t batch_size = 128;   // images per forward pass
  int64_t max_images = 1000;  // the split's first max_images images; 0 = all of it
  // The jitter of the agreement views (factors in [0, 1); 0 turns one off).
  double brightness = 0.2;
  double contrast = 0.2;
  uint64_t seed = 0;  // seeds the jitter; independent of the run's seed
  // A cell is plain when max - min of its values (inputs in [-1, 1]) is at most this on every
  // channel; 0.02 is about 2.5 grey levels of 255.
  double plain_range = 0.02;

  // InvalidArgument naming `eval.<field>`.
  absl::Status Validate() const;
};

// Reads the `eval:` section (enabled, split, path, every, batch_size, max_images, brightness,
// contrast, seed, plain_range) and finishes the reader.
absl::Status ReadTokenizerEvalSection(ConfigReader& r, TokenizerEvalConfig* config);

struct TokenizerEvalResult {
  int64_t images = 0;      // evaluated
  int64_t unreadable = 0;  // skipped because they could not be read
  double l1 = 0, mse = 0, psnr = 0;
  int64_t codes_used = 0;
  double perplexity = 0;
  double token_agreement = 0;
  double plain_positions = 0;   // fraction of positions on plain cells
  int64_t plain_codes = 0;      // codes assigned mostly on plain cells
  double plain_code_share = 0;  // plain_codes / codes_used
};

// Evaluates `model` on the first min(max_images, size) images of `heldout` (a centred square of
// each, the whole image when it is square, resized to `image_size`) on `device`. The model runs
// in evaluation mode and is returned to its previous mode; no gradients, no random numbers drawn
// from the global generators. An image that cannot be read is skipped and counted in
// `unreadable`; errors: none of them readable (the message gives the first error), LibTorch
// failures as Status. L1, MSE and PSNR pool every pixel of every image (PSNR from the pooled MSE).
// `on_batch`, when set, is called after each batch with the images evaluated so far (the
// caller's liveness signal, e.g. ProgressSink::Heartbeat).
// Data parallel: each rank evaluates its share of the images and the sums are added over the
// ranks before FinishTokenizerEval (every image counts once).
struct TokenizerEvalSums {
  int64_t images = 0, unreadable = 0;
  double abs_error = 0, squared_error = 0, values = 0;  // over every pixel value
  double agreeing = 0, positions = 0;                   // token agreement under jitter
  torch::Tensor counts;                                 // [K] int64 token histogram, CPU
  torch::Tensor plain_counts;  // [K] int64 histogram of the tokens on plain cells, CPU
  absl::Status first_error;    // of the first unreadable image
};

// The plain cells of `images` [B, C, H, W] (values in [-1, 1]) cut into tokens_per_side^2 square
// cells: [B, tokens_per_side, tokens_per_side] bool, true where max - min <= `range` on every
// channel. H must be a multiple of tokens_per_side.
torch::Tensor PlainCells(const torch::Tensor& images, int64_t tokens_per_side, double range);

// The images an evaluation covers: the first min(max_images, size) (all with max_images 0).
int64_t TokenizerEvalImages(const Dataset& heldout, const TokenizerEvalConfig& config);

// The sums over images rank, rank + world_size, ... of those EvaluateTokenizer evaluates.
absl::StatusOr<TokenizerEvalSums> EvaluateTokenizerShard(
    VqTokenizerImpl& model, const Dataset& heldout, const TokenizerEvalConfig& config,
    int image_size, torch::Device device, int rank, int world_size,
    const std::function<void(int64_t)>& on_batch = nullptr);

// The metrics of the sums of every shard; an error when no image could be read.
absl::StatusOr<TokenizerEvalResult> FinishTokenizerEval(const TokenizerEvalSums& sums,
                                                        const Dataset& heldout,
                                                        const TokenizerEvalConfig& config);

absl::StatusOr<TokenizerEvalResult> EvaluateTokenizer(
    VqTokenizerImpl& model, const Dataset& heldout, const TokenizerEvalConfig& config,
    int image_size, torch::Device device, const std::function<void(int64_t)>& on_batch = nullptr);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_TOKENIZER_EVAL_H_
