set terminal pngcairo size 1200,1140 noenhanced
set output 'bench/results/rankkv_compare_pythia-mini.png'
names = 'full snapkv rankkv pyramidkv pyramidkv-rankkv rankkv-dynamic rankkv-random rankkv-inverse pyramidkv-rankkv-random pyramidkv-rankkv-inverse'
set multiplot layout 3,2 title 'rankkv-compare: pythia-mini'
set xlabel 'average budget (positions per layer)'
set logscale x 2
set grid
set key outside right font ',9'
do for [j=1:8] { set linetype j + 8 lc j dt 2 }
set title 'wikitext: perplexity'
set ylabel 'PPL'
plot for [i=0:9] 'bench/results/rankkv_compare_pythia-mini.png.dat' index i using 1:2 with linespoints lw 2 lt (i + 1) pt ((i % 7) + 1) title word(names, i + 1)
set title 'wikitext: NLL per token minus the full cache''s'
set ylabel 'dNLL (nats)'
plot for [i=0:9] 'bench/results/rankkv_compare_pythia-mini.png.dat' index i using 1:3 with linespoints lw 2 lt (i + 1) pt ((i % 7) + 1) title word(names, i + 1)
set title 'pg-eval: perplexity'
set ylabel 'PPL'
plot for [i=0:9] 'bench/results/rankkv_compare_pythia-mini.png.dat' index i using 1:4 with linespoints lw 2 lt (i + 1) pt ((i % 7) + 1) title word(names, i + 1)
set title 'pg-eval: NLL per token minus the full cache''s'
set ylabel 'dNLL (nats)'
plot for [i=0:9] 'bench/results/rankkv_compare_pythia-mini.png.dat' index i using 1:5 with linespoints lw 2 lt (i + 1) pt ((i % 7) + 1) title word(names, i + 1)
set title 'time per output token'
set ylabel 'TPOT (ms)'
plot for [i=0:9] 'bench/results/rankkv_compare_pythia-mini.png.dat' index i using 1:6 with linespoints lw 2 lt (i + 1) pt ((i % 7) + 1) title word(names, i + 1)
set title 'KV cache after the timing prompt'
set ylabel 'KV MB'
plot for [i=0:9] 'bench/results/rankkv_compare_pythia-mini.png.dat' index i using 1:7 with linespoints lw 2 lt (i + 1) pt ((i % 7) + 1) title word(names, i + 1)
unset multiplot
