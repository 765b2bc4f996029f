/*
 * wordcount: a dapr-wasm function in C (WASI preview 1).
 *
 * Reads text on stdin and writes JSON on stdout: the number of bytes,
 * lines and words, and the most frequent words (lower-cased ASCII
 * letters, digits and apostrophes):
 *
 *   {"bytes":44,"lines":1,"words":9,"top":[{"word":"the","count":2},...]}
 *
 * argv: `wordcount [--top N]` (default 5; 0 to 100).
 *
 * Exit codes follow dapr-wasm's convention, mapped to statuses by the
 * functions file: 1 bad arguments, 2 input that is not text (a NUL byte),
 * 3 more distinct words than the function keeps. The reason goes to stderr.
 *
 * Build (scripts/lib.sh does): clang --target=wasm32-wasi --sysroot=/usr -O2
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORD 64
#define MAX_DISTINCT 65536
#define TABLE_SIZE (MAX_DISTINCT * 2)

struct entry {
    char *word;
    unsigned long count;
};

static struct entry table[TABLE_SIZE];
static unsigned long distinct;

/* FNV-1a, 32 bits. */
static uint32_t hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

/* Counts one word; returns 0, or 3 when the table is full. */
static int add_word(const char *word) {
    unsigned long i = hash(word) % TABLE_SIZE;
    while (table[i].word) {
        if (strcmp(table[i].word, word) == 0) {
            table[i].count++;
            return 0;
        }
        i = (i + 1) % TABLE_SIZE;
    }
    if (distinct >= MAX_DISTINCT) {
        fprintf(stderr, "more than %d distinct words\n", MAX_DISTINCT);
        return 3;
    }
    table[i].word = strdup(word);
    if (!table[i].word) {
        fprintf(stderr, "out of memory\n");
        return 3;
    }
    table[i].count = 1;
    distinct++;
    return 0;
}

static int by_count(const void *a, const void *b) {
    const struct entry *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

int main(int argc, char **argv) {
    long top = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--top") == 0 && i + 1 < argc) {
            char *end;
            top = strtol(argv[++i], &end, 10);
            if (*end || top < 0 || top > 100) {
                fprintf(stderr, "--top must be a number from 0 to 100, not `%s`\n", argv[i]);
                return 1;
            }
        } else {
            fprintf(stderr, "unknown argument `%s` (usage: wordcount [--top N])\n", argv[i]);
            return 1;
        }
    }

    unsigned long bytes = 0, lines = 0, words = 0;
    char word[MAX_WORD + 1];
    size_t len = 0;
    int c, status;
    while ((c = getchar()) != EOF) {
        bytes++;
        if (c == 0) {
            fprintf(stderr, "the input is not text: a NUL byte at offset %lu\n", bytes - 1);
            return 2;
        }
        if (c == '\n') lines++;
        if (isalnum(c) || c == '\'') {
            if (len < MAX_WORD) word[len++] = (char)tolower(c);
            continue;
        }
        if (len > 0) {
            word[len] = '\0';
            words++;
            if ((status = add_word(word)) != 0) return status;
            len = 0;
        }
    }
    if (len > 0) {
        word[len] = '\0';
        words++;
        if ((status = add_word(word)) != 0) return status;
    }
    if (bytes > 0 && lines == 0) lines = 1;

    struct entry *sorted = malloc(sizeof(struct entry) * (distinct ? distinct : 1));
    if (!sorted) {
        fprintf(stderr, "out of memory\n");
        return 3;
    }
    unsigned long n = 0;
    for (unsigned long i = 0; i < TABLE_SIZE; i++)
        if (table[i].word) sorted[n++] = table[i];
    qsort(sorted, n, sizeof(struct entry), by_count);

    printf("{\"bytes\":%lu,\"lines\":%lu,\"words\":%lu,\"top\":[", bytes, lines, words);
    for (unsigned long i = 0; i < n && i < (unsigned long)top; i++) {
        /* Words hold only [a-z0-9'], so they need no JSON escaping. */
        printf("%s{\"word\":\"%s\",\"count\":%lu}", i ? "," : "", sorted[i].word, sorted[i].count);
    }
    printf("]}\n");
    return 0;
}
