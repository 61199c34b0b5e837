set terminal pngcairo size 1000,600 noenhanced
set output 'bench/results/rekv_nano_mini/plots/fig1_similarity_distribution_K4.png'
set title 'cosine similarity distribution: draft pythia-nano vs target pythia-mini, K=4, 734 rejections (NO-GO)'
set grid
set key below
set xlabel 'cosine similarity (per event and layer)'
set ylabel 'fraction of compared layer rows'
set xrange [-1:1]
plot 'bench/results/rekv_nano_mini/plots/fig1_similarity_distribution_K4.png.dat' using 1:2 with histeps lw 2 lc rgb '#2171b5' title 'K: draft vs target', \
     '' using 1:3 with histeps lw 2 lc rgb '#cb181d' title 'V: draft vs target', \
     '' using 1:4 with histeps lw 1 dt 2 lc rgb '#6baed6' title 'K: target rejected vs target', \
     '' using 1:5 with histeps lw 1 dt 2 lc rgb '#fc9272' title 'V: target rejected vs target'
