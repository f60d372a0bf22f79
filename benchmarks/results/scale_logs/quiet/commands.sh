set -x
cd .
export PYTHONPATH=src
P=python
L=/tmp/scale/logs
uptime
$P benchmarks/scale.py runs /tmp/scale/f100k_224 --settings auto --repeats 3 > $L/runs_100k_224_auto.jsonl
$P benchmarks/scale.py runs /tmp/scale/f100k_224 --settings true > $L/runs_100k_224_true.jsonl
uptime
$P benchmarks/scale.py runs /tmp/scale/f20k_128 --settings auto --repeats 2 > $L/runs_20k_128_auto.jsonl
$P benchmarks/scale.py runs /tmp/scale/f20k_128 --settings auto --set data.limit=640 > $L/runs_20k_128_baseline.jsonl
uptime
$P benchmarks/scale.py runs /tmp/scale/f50k_128 --settings auto false > $L/runs_50k_128.jsonl
$P benchmarks/scale.py runs /tmp/scale/f10k_128 --command data --settings auto false > $L/data_10k_128.jsonl
$P benchmarks/scale.py runs /tmp/scale/f200k_128 --command data --settings auto true > $L/data_200k_128.jsonl
uptime
$P benchmarks/scale.py stream /tmp/scale/f20k_128 --workers 0 1 2 --repeats 5 --batches 20 > $L/stream_20k_128.jsonl
uptime
$P benchmarks/scale.py listing /tmp/scale/f200k_128 --repeats 3 > $L/listing_200k.jsonl
uptime
