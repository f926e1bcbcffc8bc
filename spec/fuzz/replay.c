/*
 * Feed saved inputs to the fuzz target without libFuzzer: the seed corpus
 * and every input that once crashed it (spec/fuzz/regress) run in `make
 * unit`, under ASan with `make asan`.
 *
 *   build/fuzz_replay FILE...
 */
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int main(int argc, char **argv) {
  int i, n = 0;
  for (i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    unsigned char *buf;
    long len;
    if (f == NULL) continue;           /* an unmatched glob */
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
      fclose(f);
      fprintf(stderr, "fuzz_replay: cannot read %s\n", argv[i]);
      return 1;
    }
    buf = (unsigned char *)malloc(len ? (size_t)len : 1);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
      fprintf(stderr, "fuzz_replay: cannot read %s\n", argv[i]);
      return 1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)len);
    free(buf);
    n++;
  }
  printf("fuzz_replay: %d inputs, no crash\n", n);
  return 0;
}
