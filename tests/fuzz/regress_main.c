/*
 * regress_main.c: runs a fuzz target's LLVMFuzzerTestOneInput over every file
 * under the directories named on the command line (recursively), without
 * libFuzzer, so the seed corpora and every past crash are replayed by the
 * normal test suite (ctest -R fuzz_regress). A missing directory is skipped.
 * Exit status 0 when every input ran (a failing input aborts the process).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long ran;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    /* an exact-size copy, so that a driver reading past the input is caught under ASan */
    uint8_t *exact = malloc(len ? len : 1);
    memcpy(exact, buf, len);
    free(buf);
    fprintf(stderr, "  %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    ran++;
    return 0;
}

static int walk(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0; /* no corpus of this kind yet */
    if (S_ISREG(st.st_mode))
        return run_file(path);
    if (!S_ISDIR(st.st_mode))
        return 0;
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", and dotfiles such as .gitkeep */
        size_t need = strlen(path) + strlen(e->d_name) + 2;
        char *child = malloc(need);
        snprintf(child, need, "%s/%s", path, e->d_name);
        if (walk(child) != 0)
            rc = -1;
        free(child);
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++)
        if (walk(argv[i]) != 0)
            rc = 1;
    printf("%s: %lu inputs ran\n", argc > 0 ? argv[0] : "regress", ran);
    return rc;
}
