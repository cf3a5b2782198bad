// testing: small helpers shared by the tests of every layer.
#ifndef PTMPFS_TEST_TESTING_H_
#define PTMPFS_TEST_TESTING_H_

#include <cstdint>
#include <string>

namespace ptmpfs::testing {

// The seed for a randomized test: $PTMPFS_SEED if set (to replay a failure), else
// a fresh one. The test prints it either way.
uint64_t TestSeed();

// Peak resident set of this process (VmHWM), in bytes; 0 if unknown.
uint64_t PeakRssBytes();
// Current resident set (VmRSS), in bytes.
uint64_t RssBytes();

// True in the build with sanitizers, whose shadow memory makes RSS meaningless.
constexpr bool kSanitized =
#ifdef PTMPFS_SANITIZED
    true;
#else
    false;
#endif

// A fresh directory under $TMPDIR or /var/tmp, removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace ptmpfs::testing

#endif  // PTMPFS_TEST_TESTING_H_
