/* strmap.c - open-addressing hash from borrowed strings to indices, used to
 * find tensors by name and to detect duplicate names in hostile files. */
#include <stdlib.h>
#include <string.h>

#include "source_sink.h"

static uint64_t hash_string(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static bool rehash(lti_strmap *map, size_t new_cap)
{
    const char **keys = calloc(new_cap, sizeof *keys);
    long *values = calloc(new_cap, sizeof *values);
    if (!keys || !values) {
        free(keys);
        free(values);
        return false;
    }
    for (size_t i = 0; i < map->cap; i++) {
        if (!map->keys[i])
            continue;
        size_t slot = hash_string(map->keys[i]) & (new_cap - 1);
        while (keys[slot])
            slot = (slot + 1) & (new_cap - 1);
        keys[slot] = map->keys[i];
        values[slot] = map->values[i];
    }
    free(map->keys);
    free(map->values);
    map->keys = keys;
    map->values = values;
    map->cap = new_cap;
    return true;
}

int lti_strmap_put(lti_strmap *map, const char *key, long value)
{
    if ((map->count + 1) * 2 > map->cap) {
        size_t new_cap = map->cap ? map->cap * 2 : 16;
        if (new_cap < map->cap || !rehash(map, new_cap))
            return -1;
    }
    size_t slot = hash_string(key) & (map->cap - 1);
    while (map->keys[slot]) {
        if (strcmp(map->keys[slot], key) == 0)
            return 0;
        slot = (slot + 1) & (map->cap - 1);
    }
    map->keys[slot] = key;
    map->values[slot] = value;
    map->count++;
    return 1;
}

long lti_strmap_get(const lti_strmap *map, const char *key)
{
    if (!map->cap)
        return -1;
    size_t slot = hash_string(key) & (map->cap - 1);
    while (map->keys[slot]) {
        if (strcmp(map->keys[slot], key) == 0)
            return map->values[slot];
        slot = (slot + 1) & (map->cap - 1);
    }
    return -1;
}

void lti_strmap_free(lti_strmap *map)
{
    free(map->keys);
    free(map->values);
    memset(map, 0, sizeof *map);
}
