// Images on disk, labelled or not (docs/TRAINER.md "Image data"):
//   class folders  root/<class>/**/<file>.{jpg,jpeg,png}   label = the class folder's rank by name
//   a flat folder  root/**/<file>.{jpg,jpeg,png}           unlabelled (self-supervised jobs)
//   a list file    one image path a line, relative to the list's folder; "<path>\t<label>" on
//                  every line for labels (integers >= 0), none for unlabelled; blank lines and
//                  lines starting with '#' are skipped
#ifndef PECO_TRAINER_DATA_IMAGE_FOLDER_H_
#define PECO_TRAINER_DATA_IMAGE_FOLDER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/data/dataset.h"
#include "trainer/data/image_codec.h"

namespace peco::trainer {

// How a folder's images are labelled.
enum class FolderLabels {
  kAuto,     // class folders when the root has sub-folders, else a flat unlabelled folder
  kFolders,  // class folders
  kNone,     // every image below the root, unlabelled
};

struct ImageFolderOptions {
  FolderLabels labels = FolderLabels::kAuto;
  // JPEGs are decoded with DCT scaling at the smallest scale whose shorter side is still
  // >= min_decode_side (see DecodeJpeg). 0 decodes at full size. PNGs are always full size.
  int min_decode_side = 0;
  // What a file may be: larger files are refused before they are read, images over the pixel or
  // scan limits before they are decoded (image_codec.h).
  ImageLimits limits;
};

// Opens `root`: a list file when it is a regular file, else a folder. A folder is scanned once:
// with class folders every immediate sub-directory is a class (sorted by name; label = rank in
// that order), and every regular file below it (recursively) whose extension is .jpg, .jpeg or
// .png (case-insensitive) is a sample; a flat folder's samples are every such file below the
// root. Samples are sorted by path. An unlabelled dataset has num_classes() 0 and labels -1.
// A list file's paths must be relative and resolve (symlinks followed) inside its folder: a list
// cannot reach outside the folder it sits in; at most 20,000,000 entries of 256 MiB, labels in
// [0, 99999]. data.labels none drops a list's labels, folders refuses a list; auto refuses a
// folder that holds images beside sub-folders (which images count would be a guess). Errors name
// the path (and the line of a list): a missing or unreadable root, a bad line, no images at all.
// Files are read and decoded on Get(); a file that cannot be read or decoded makes Get() return an
// error naming it. Thread-safe.
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& root,
                                                         ImageFolderOptions options = {});

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_IMAGE_FOLDER_H_
